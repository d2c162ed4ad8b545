"""gtracd: trust-aware peer-to-peer LLM inference (G-TRAC). The package map: docs/architecture.md."""

from .net.standins import install as _install_standins
from .version import __version__

__all__ = ["__version__", "Client", "AsyncClient", "open_client", "GenerationFailed"]

_install_standins()  # before anything imports libp2p: stand-ins only for never-called packages not installed


def __getattr__(name: str):
    """`gtracd.Client`, `gtracd.open_client`, `gtracd.AsyncClient`: the Python client (gtracd/seeker/client.py),
    imported on first use (PEP 562) so that importing any gtracd module does not import the seeker."""
    if name in ("Client", "AsyncClient", "open_client", "GenerationFailed"):
        from .seeker import client

        return getattr(client, name)
    raise AttributeError(f"module 'gtracd' has no attribute {name!r}")
