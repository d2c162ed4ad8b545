"""The seeker's recent requests, as `gtracd status` and `gtracd top` show them: the chain each one used with
per-hop latency, tokens/s, the repairs it needed (and whom they blamed) and how it ended. Bounded; the
seeker's event loop is its only writer, status reads it."""

from __future__ import annotations

import time
from collections import Counter, deque

KEEP = 20  # requests shown


def _hop(h) -> dict:
    lat = h.latency_ms()
    return {"peer": h.peer.peer_id, "name": h.peer.name, "layers": [h.peer.start, h.peer.end],
            "latency_ms": None if lat is None else round(lat, 2)}


class Recent:
    def __init__(self, keep: int = KEEP):
        self.items: deque[dict] = deque(maxlen=keep)
        self.totals: Counter = Counter()

    def record(self, gen, ok: bool, culprit: str | None, tokens: int, seconds: float | None,
               error: str | None = None) -> dict:
        """One finished request (`gen` is its seeker.generation.Generation)."""
        item = {"at": round(time.time(), 3), "ok": ok, "tokens": tokens,
                "tok_s": round(tokens / seconds, 2) if ok and seconds and tokens else None,
                "chain": [_hop(h) for h in gen.hops],
                "repairs": [{"hop": r["hop"], "failed": r["failed"], "replacement": r["replacement"],
                             "verdict": r.get("verdict"), "blamed": r.get("blamed", True)} for r in gen.repair_log],
                "culprit": culprit, "error": error}
        self.items.append(item)
        self.totals["ok" if ok else "failed"] += 1
        self.totals["repairs"] += len(gen.repair_log)
        return item

    def status(self) -> dict:
        return {"requests": list(self.items), "request_totals": dict(self.totals)}
