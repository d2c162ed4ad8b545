"""Serving the API inside the seeker's nursery (hypercorn's trio worker), loopback unless a key is set."""

from __future__ import annotations

import logging
from pathlib import Path

import trio

from ...errors import UserError
from .requests import is_loopback

log = logging.getLogger("gtracd.api")


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
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def serve_api(app, bind: str, shutdown_trigger=None, task_status=None) -> None:
    """Serve until cancelled (or shutdown_trigger returns); task_status.started(the bound URLs)."""
    from hypercorn.config import Config
    from hypercorn.trio import serve

    cfg = Config()
    cfg.bind = [bind]
    cfg.accesslog = None
    cfg.errorlog = log
    cfg.graceful_timeout = 2.0
    cfg.keep_alive_timeout = 30.0
    cfg.h11_max_incomplete_size = 64 * 1024  # request line and headers
    ts = task_status if task_status is not None else trio.TASK_STATUS_IGNORED
    kw = {"shutdown_trigger": shutdown_trigger} if shutdown_trigger is not None else {}
    await serve(app, cfg, task_status=ts, mode="asgi", **kw)
