"""gtracd: trust-aware peer-to-peer LLM inference (G-TRAC)."""

from .net.standins import install as _install_standins

__version__ = "0.1.0"
_install_standins()  # before anything imports libp2p: stand-ins only for never-called packages not installed


def __getattr__(name: str):
    """`gtracd.Client`, `gtracd.open_client`, `gtracd.AsyncClient`: the Python client (gtracd/client.py), imported
    on first use so the CLI does not pay for it."""
    if name in ("Client", "AsyncClient", "open_client", "GenerationFailed"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'gtracd' has no attribute {name!r}")
