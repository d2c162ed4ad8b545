"""gtracd: trust-aware peer-to-peer LLM inference (G-TRAC)."""

from .net.standins import install as _install_standins

__version__ = "0.1.0"
_install_standins()  # before anything imports libp2p: stand-ins only for never-called packages not installed
