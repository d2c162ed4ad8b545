"""Testbed load for the control plane, clearly not inference: `gtracd --role seeker serve --testbed-reports
RATE` is a seeker that, besides keeping its cache, emits RATE trust reports per second about chains it routes
over the live identities (G-TRAC from its own view; `gtracd testbed fleet` announces them), with latencies
drawn around each identity's nominal latency. Everything else — signing, gossip, direct submission, outbox,
anchors' validation — is the real path."""

from __future__ import annotations

import hashlib
import os
import random
from typing import TYPE_CHECKING

import trio

from ..routing import NoRoute, Params, route

if TYPE_CHECKING:
    from gtracd.control.follower import Follower


def nominal_latency_ms(peer_id: str) -> float:
    return 20.0 + (int(hashlib.sha256(peer_id.encode()).hexdigest()[:4], 16) % 60)


async def synthetic_reports(cache: Follower, rate: float, params: Params, network: str, seed: int | None = None) -> None:
    """Emit `rate` reports/s about chains over the live view (see module docstring)."""
    rng = random.Random(seed)
    due = trio.current_time()
    while True:
        # a Poisson schedule in absolute time: the time each report takes is not added to the next gap
        due = max(due + (rng.expovariate(rate) if rate > 0 else 3600), trio.current_time() - 1.0)
        await trio.sleep_until(due)
        fps = sorted(cache.view.models_seen())  # synthetic load: any announced model will do
        if not fps:
            continue
        mt = (fps[0],)
        try:
            r = route(cache.view.snapshot(mt[0]), "g-trac", params, rng=rng)
        except NoRoute:
            continue
        chain = [p.id for p in r.chain]
        lats = [max(0.1, rng.gauss(nominal_latency_ms(pid), 3.0)) for pid in chain]
        await cache.report([{"network": network, "request_id": os.urandom(16), "model": mt[0], "mode": "g-trac",
                             "chain": chain, "latency_ms": lats, "outcome": "success", "culprit": -1,
                             "tokens": 32}])
