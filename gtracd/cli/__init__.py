"""The `gtracd` command (entry point `gtracd.cli:main`)."""

from .main import main

__all__ = ["main"]
