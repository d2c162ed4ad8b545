"""`gtracd lab host`: one worker process serving many virtual peers of a plan (needs the worker extra).

Each virtual peer has its own identity and signed heartbeat and serves the real data plane (sessions, KV
caches, frames, repair, the binding proof); peers of one layer range share one real shard, as the paper's
replicas share a physical shard, and each adds its own behaviour (lab.behaviour): delay, stall, CPU burn,
slower host, corruption, crash, flapping.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import time
from typing import TYPE_CHECKING

import trio

from ..control.heartbeat import Hosted, publish_heartbeats
from ..daemon import runtime as common
from ..daemon.node import running_node
from ..engine import require_torch, set_threads
from ..engine.models import resolve_model
from ..errors import UserError
from ..net.protocols import INFER
from ..wire.envelope import Signer
from ..worker.main import Served, WorkerDaemon
from .behaviour import Behaviour
from .layout import groups, host_identity, peer_identity
from .plan import load_plan
from .profiles import load_catalog

if TYPE_CHECKING:
    from libp2p.abc import IHost

    from gtracd.config import Settings

log = logging.getLogger("gtracd.lab")


def main(args: argparse.Namespace, s: Settings) -> int:

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    common.setup_logging(args.log_level, s)
    require_torch()
    from ..engine.perturb import corrupter
    from ..engine.server import ShardServer

    set_threads(1)
    catalog = load_catalog(args.profiles)
    plan = load_plan(args.plan, catalog)
    rows = groups(plan, args.groups)[args.group]
    folder = resolve_model(args.model, log=lambda m: print(m, file=sys.stderr, flush=True))
    shards = {}
    t0 = time.perf_counter()
    for a, b in sorted({(r.start, r.end) for r in rows}):
        shards[(a, b)] = ShardServer(folder, a, b, max_sessions=4096, cache_tokens=1 << 22, ttl_s=600.0)
    total = next(iter(shards.values())).shard.total if shards else plan.layers
    if total != plan.layers:
        raise UserError(f"the plan has {plan.layers} layers but model {args.model} has {total}")
    log.info("loaded %d shards in %.2fs", len(shards), time.perf_counter() - t0)
    now = time.monotonic()
    served = []
    for r in rows:
        srv = shards[(r.start, r.end)]
        rng = random.Random(f"{args.seed}/{r.peer_id}")
        beh = Behaviour(r, args.time_scale, catalog.hosts[r.host_type].speed, catalog.cpu_unit_ms, now, rng,
                        corrupter(rng, srv.vocab), stall_s=args.stall_s,
                        compute_ms_per_layer=catalog.compute_ms_per_layer)
        served.append(Served(peer_identity(args.secret, r.peer_id), srv, r.peer_id, beh))
    host = host_identity(args.secret, args.group)
    name = f"lab-host-{args.group}"
    daemon = WorkerDaemon(served, host.peer_id, s, name)
    try:
        trio.run(_serve, daemon, host, s, args)
    except KeyboardInterrupt:
        pass
    return 0


async def _serve(daemon, host: IHost, s: Settings, args: argparse.Namespace) -> None:
    async with trio.open_nursery() as outer:
        outer.start_soon(common.until_signalled, outer.cancel_scope)
        async with running_node("worker", daemon.name, host, s, persistent_peerstore=False) as node:
            node.host.set_stream_handler(INFER, daemon.handle)
            addrs = node.addrs
            hosted = []
            for sv in daemon.served.values():
                srv, beh = sv.server, sv.behaviour
                hosted.append(Hosted(Signer(sv.ident), srv.fingerprint, srv.start, srv.end, srv.shard.total, addrs,
                                     sv.name, state=lambda srv=srv: {"free_tokens": srv.table.free_tokens,
                                                                     "load": len(srv.table) / 4096},
                                     alive=lambda beh=beh: beh.alive(time.monotonic())))
            node.status_parts.append(lambda: {
                "lab": {"peers": len(hosted), "counters": daemon.counters,
                        "behaviour": {sv.name: sv.behaviour.counts for sv in daemon.served.values()
                                      if any(sv.behaviour.counts.values())}}})
            node.nursery.start_soon(publish_heartbeats, node, hosted, s.heartbeat_s)
            common.write_ready(args.ready_file, {"role": "worker", "peer_id": host.peer_id, "addrs": addrs,
                                                 "peers": {sv.name: sv.peer_id for sv in daemon.served.values()},
                                                 "pid": os.getpid()})
            print(f"gtracd lab host {args.group}: {len(hosted)} virtual peers ready: {addrs[0]}", file=sys.stderr,
                  flush=True)
            await trio.sleep_forever()
