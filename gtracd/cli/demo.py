"""`gtracd demo` (what `make demo` runs): a local network on loopback that generates real text.

Two anchors hold the trust ledger; three workers host SmolLM2-135M-Instruct layers 0:10, 10:20, 20:30 (one
process each) and announce themselves by signed heartbeats; a seeker that only knows the anchors' addresses
finds the workers by gossip, asks a chat question through a G-TRAC chain (the answer streams to the
terminal), and sends its signed trust report to the anchors, which admit it. Then everything shuts down.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import time

import trio

from ..config import load_settings
from ..control.peerview import PeerView
from ..engine.models import resolve_model
from ..errors import UserError
from ..harness.controlnet import ControlNet
from ..harness.launch import start_workers, stop_all
from ..identity import Identity
from ..routing import Params
from ..seeker.generation import Generation, GenerationFailed
from ..seeker.main import wait_for_route
from ..seeker.running import running_seeker

QUESTION = "What is the capital of France?"


def main(args: argparse.Namespace) -> int:

    t0 = time.time()
    resolve_model(args.model, log=lambda m: print(m, file=sys.stderr, flush=True))
    cn = ControlNet(network="gtracd-demo", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=10.0)
    print("gtracd demo: starting 2 anchors on 127.0.0.1 ...", flush=True)
    cn.start(["anchor-1", "anchor-2"])
    ranges = [(0, 10), (10, 20), (20, 30)]
    print(f"gtracd demo: starting 3 workers ({args.model}, layers {', '.join(f'{a}:{b}' for a, b in ranges)}) ...",
          flush=True)
    net_flags = ["--network", cn.network, "--bootstrap", ",".join(cn.anchor_addrs.values()), "--data-dir",
                 str(cn.root), "--heartbeat-s", "1"]
    workers = []
    code = 1
    try:
        workers = start_workers(args.model, ranges, names=[f"worker-{a}-{b}" for a, b in ranges], extra=net_flags)
        print(f"gtracd demo: network ready in {time.time() - t0:.1f} s (state in {cn.root})", flush=True)
        code = trio.run(_ask, cn, args.question, args.max_new_tokens)
    finally:
        rcs = stop_all(workers) + list(cn.stop_all().values())
        alive = [w.info["pid"] for w in workers if w.proc.poll() is None]
        print(f"gtracd demo: workers and anchors stopped (exit codes {rcs}){'; STRAY: ' + str(alive) if alive else ''}",
              flush=True)
        shutil.rmtree(cn.root, ignore_errors=True)
    return code


async def _ask(cn, question: str, max_new: int) -> int:
    s = load_settings(None, {"network": cn.network, "bootstrap": list(cn.anchor_addrs.values()),
                             "data_dir": str(cn.root), "keystore": str(cn.keystore), "sync_s": 1.0}, env={})
    async with running_seeker("demo-seeker", Identity.generate(), s, view=PeerView()) as sk:
        view, cache = sk.view, sk.cache
        print("gtracd demo: waiting for the workers' heartbeats (gossip through the anchors) ...", flush=True)
        if not await wait_for_route(view, Params(), "g-trac", 30):
            raise UserError("the workers' heartbeats did not arrive within 30 s")
        print(f"gtracd demo: heard {len(view.workers)} workers by heartbeat", flush=True)
        gen = Generation(sk.net, view, Params(), "g-trac", rng=random.Random(0))
        try:
            await gen.start()
            print("gtracd demo: chain (g-trac): " + " -> ".join(f"{h.peer.name}[{h.peer.start}:{h.peer.end}]"
                                                             for h in gen.hops), flush=True)
            toks = await gen.tokenize(messages=[{"role": "user", "content": question}])
            print(f"\nyou> {question}\nassistant> ", end="", flush=True)
            r = await gen.turn(toks, max_new, lambda t: (sys.stdout.write(t), sys.stdout.flush()))
            rate = len(r.step_ms) / (sum(r.step_ms) / 1e3) if r.step_ms else 0.0
            print(f"\n\ngtracd demo: {len(r.tokens)} tokens, prefill {r.prefill_ms:.0f} ms, {rate:.1f} tok/s "
                  f"over 3 hops (pid {os.getpid()} seeker)", flush=True)
            await gen.aclose()
        except GenerationFailed as e:
            await gen.cancel()
            print(f"\ngtracd demo: generation failed: {e}", file=sys.stderr)
            return 1
        await cache.report(gen.report_bodies(s.network, True, None, len(r.tokens)))
        left = await cache.drain(10.0)
        with trio.move_on_after(10):
            while len(cache.replica.ledger) < 1:
                await trio.sleep(0.05)
        trust, lat = cache.replica.trust_latency()
        print(f"gtracd demo: trust report {'acknowledged by an anchor' if not left else 'NOT acknowledged'}; "
              f"ledger replica now rates " + ", ".join(f"{view.workers[p].name} {t:.2f} ({lat.get(p, 0):.0f} ms)"
                                                      for p, t in trust.items() if p in view.workers), flush=True)
        return 0 if not left else 1
