"""Serving an ASGI app inside a daemon's nursery with hypercorn's trio worker: the seeker's OpenAI API and
every daemon's `/metrics` and `/health` (daemon.observe). Bounded: request line and headers at most 64 KiB,
idle keep-alive 30 s; the apps bound their bodies and reads themselves."""

from __future__ import annotations

import logging

import trio

log = logging.getLogger("gtracd.http")


async def serve_asgi(app, bind: str, shutdown_trigger=None, task_status=None) -> None:
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


async def lifespan(receive, send) -> None:
    """An ASGI app's lifespan: nothing to start or stop, so each event is acknowledged."""
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def bind_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
