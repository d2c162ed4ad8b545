"""Testbed load for the control plane (tests, `gtracd bench ledger`), clearly not inference:

- `gtracd testbed fleet --identities N`: one process announcing N worker identities (layer ranges spread
  over `--stages` stages) with batched, individually signed heartbeats. It serves no model: a seeker that
  routes a real request to these identities fails at the stream, as it should.
- `gtracd --role seeker serve --testbed-reports RATE`: a seeker that, besides keeping its cache, emits RATE
  trust reports per second about chains it routes over the live identities (G-TRAC from its own view), with
  latencies drawn around each identity's nominal latency. Everything else — signing, gossip, direct
  submission, outbox, anchors' validation — is the real path.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys

import trio

from .identity import Identity
from .routing import NoRoute, Params, route
from .wire.envelope import Signer


def fleet_identities(n: int, seed: str) -> list[Identity]:
    """Stable identities (the same seed gives the same peer ids across restarts)."""
    return [Identity(hashlib.sha256(f"gtracd-fleet/{seed}/{i}".encode()).digest()) for i in range(n)]


def fleet_layout(n: int, stages: int, total: int) -> list[tuple[int, int]]:
    bounds = [round(k * total / stages) for k in range(stages + 1)]
    return [(bounds[i % stages], bounds[i % stages + 1]) for i in range(n)]


async def run_fleet(args, s) -> None:
    from .heartbeat import Hosted, publish_heartbeats
    from .node import running_node
    from .roles import common

    ids = fleet_identities(args.identities, args.seed)
    layout = fleet_layout(args.identities, args.stages, args.total_layers)
    async with trio.open_nursery() as outer:
        outer.start_soon(common.until_signalled, outer.cancel_scope)
        ident = Identity(hashlib.sha256(f"gtracd-fleet-host/{args.seed}".encode()).digest())
        async with running_node("fleet", args.name, ident, s, None, persistent_peerstore=False) as node:
            hosted = [Hosted(Signer(i), "testbed-model", a, b, args.total_layers, node.addrs, f"{args.name}-{k}",
                             state=lambda: {"free_tokens": 65536, "load": 0.0})
                      for k, (i, (a, b)) in enumerate(zip(ids, layout, strict=True))]
            node.status_parts.append(lambda: {"identities": len(hosted)})
            node.nursery.start_soon(publish_heartbeats, node, hosted, s.heartbeat_s)
            common.write_ready(args.ready_file, {"role": "fleet", "peer_id": ident.peer_id, "addrs": node.addrs,
                                                 "identities": [i.peer_id for i in ids], "pid": os.getpid()})
            print(f"gtracd fleet {args.name}: {len(ids)} identities ready: {node.addrs[0]}", file=sys.stderr,
                  flush=True)
            await trio.sleep_forever()


def nominal_latency_ms(peer_id: str) -> float:
    return 20.0 + (int(hashlib.sha256(peer_id.encode()).hexdigest()[:4], 16) % 60)


async def synthetic_reports(cache, rate: float, params: Params, network: str, seed: int | None = None) -> None:
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
