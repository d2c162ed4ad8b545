"""The gtracd version: one place (heartbeats, worker info, `gtracd --version`)."""

__version__ = "0.1.0"
