"""Serving the API inside the seeker's nursery (hypercorn's trio worker), loopback unless a key is set."""

from __future__ import annotations

from pathlib import Path

from ...daemon.httpd import bind_text, serve_asgi
from ...errors import UserError
from .requests import is_loopback


def parse_bind(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise UserError(f"--http wants HOST:PORT (e.g. 127.0.0.1:8080), not {text!r}")
    return host, int(port)


def read_api_key(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        key = Path(path).expanduser().read_text().strip()
    except OSError as e:
        raise UserError(f"cannot read --api-key-file {path}: {e}") from None
    if len(key) < 16 or any(c.isspace() for c in key):
        raise UserError(f"the key in {path} must be one word of at least 16 characters")
    return key


def check_bind(bind: str, api_key: str | None) -> str:
    """The bind address to use; a non-loopback one needs an API key."""
    host, port = parse_bind(bind)
    if not is_loopback(host) and api_key is None:
        raise UserError(f"--http {bind} would serve beyond this machine: give --api-key-file FILE (clients send "
                        "it as a bearer token), or bind 127.0.0.1")
    return bind_text(host, port)


serve_api = serve_asgi  # the API runs in the seeker's nursery like every daemon's /metrics
