"""Testbed load for the control plane (tests, `gtracd bench ledger`), clearly not inference:

- `gtracd testbed fleet --identities N`: one process announcing N worker identities (layer ranges spread
  over `--stages` stages) with batched, individually signed heartbeats. It serves no model: a seeker that
  routes a real request to these identities fails at the stream, as it should.
- the reports' side is the seeker's own (`seeker serve --testbed-reports RATE`, seeker/testload.py).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from typing import TYPE_CHECKING

import trio

from ..control.heartbeat import Hosted, publish_heartbeats
from ..daemon import runtime as common
from ..daemon.node import running_node
from ..identity import Identity
from ..wire.envelope import Signer

if TYPE_CHECKING:
    from gtracd.config import Settings


def fleet_identities(n: int, seed: str) -> list[Identity]:
    """Stable identities (the same seed gives the same peer ids across restarts)."""
    return [Identity(hashlib.sha256(f"gtracd-fleet/{seed}/{i}".encode()).digest()) for i in range(n)]


def fleet_layout(n: int, stages: int, total: int) -> list[tuple[int, int]]:
    bounds = [round(k * total / stages) for k in range(stages + 1)]
    return [(bounds[i % stages], bounds[i % stages + 1]) for i in range(n)]


async def run_fleet(args: argparse.Namespace, s: Settings) -> None:
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
