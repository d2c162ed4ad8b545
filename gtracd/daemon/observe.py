"""Every daemon's `/metrics` (Prometheus text) and `/health` (200 when ready, 503 and why not), served with
`--metrics [HOST:]PORT`. GET only, no body read; anything else is 404/405. Both are computed from the status
snapshot (`Node.status`, the function that writes the status file), taken at scrape time on the daemon's own
event loop (hypercorn runs in the node's nursery), so a scrape sees what `gtracd status --json` sees."""

from __future__ import annotations

import json
import logging

from ..ops.metrics import CONTENT_TYPE, exposition
from ..version import __version__
from ..wire.versions import SPEAKS
from .httpd import lifespan

log = logging.getLogger("gtracd.metrics")


def health_of(st: dict | None) -> tuple[int, dict]:
    """(HTTP status, body) of /health for a status snapshot."""
    if not isinstance(st, dict):
        return 503, {"ready": False, "why": "starting"}
    r = st.get("readiness") if isinstance(st.get("readiness"), dict) else {"ready": False, "why": "starting"}
    body = {"ready": bool(r.get("ready")), "why": r.get("why", ""), "role": st.get("role"), "name": st.get("name"),
            "peer_id": st.get("peer_id"), "version": __version__, "wire": list(SPEAKS)}
    return (200 if body["ready"] else 503), body


class ObserveApp:
    """The ASGI app; `source()` returns the daemon's status snapshot."""

    def __init__(self, source):
        self.source = source

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await lifespan(receive, send)
        if scope["type"] != "http":
            return
        path, method = scope["path"].rstrip("/") or "/", scope["method"]
        if path not in ("/metrics", "/health"):
            return await _reply(send, 404, b"not found: GET /metrics or /health\n")
        if method not in ("GET", "HEAD"):
            return await _reply(send, 405, b"use GET\n")
        if path == "/metrics":
            try:
                body = exposition(self.source, SPEAKS, __version__)
            except Exception:  # a bug in a mapping must not take the daemon down: say so, answer 500
                log.exception("metrics exposition failed")
                return await _reply(send, 500, b"metrics exposition failed (see the daemon's log)\n")
            return await _reply(send, 200, body, CONTENT_TYPE)
        status, doc = health_of(self.source())
        await _reply(send, status, json.dumps(doc).encode() + b"\n", "application/json")


async def _reply(send, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
