"""`gtracd demo` (what `make demo` runs): a local network on loopback that generates real text.

Three workers host SmolLM2-135M-Instruct layers 0:10, 10:20, 20:30 (one process each), a seeker asks a chat
question through a G-TRAC chain, the answer streams to the terminal, and everything shuts down cleanly.
"""

from __future__ import annotations

import os
import random
import sys
import time

import trio

from .errors import UserError

QUESTION = "What is the capital of France?"


def main(args) -> int:
    from .engine.models import resolve_model
    from .launch import start_workers, stop_all

    t0 = time.time()
    resolve_model(args.model, log=lambda m: print(m, file=sys.stderr, flush=True))
    ranges = [(0, 10), (10, 20), (20, 30)]
    print(f"gtracd demo: starting 3 workers ({args.model}, layers {', '.join(f'{a}:{b}' for a, b in ranges)}) "
          f"on 127.0.0.1 ...", flush=True)
    workers = start_workers(args.model, ranges, names=[f"worker-{a}-{b}" for a, b in ranges])
    code = 1
    try:
        print(f"gtracd demo: workers ready in {time.time() - t0:.1f} s", flush=True)
        code = trio.run(_ask, [w.addr for w in workers], args.question, args.max_new_tokens)
    finally:
        rcs = stop_all(workers)
        alive = [w.info["pid"] for w in workers if w.proc.poll() is None]
        print(f"gtracd demo: workers stopped (exit codes {rcs}){'; STRAY: ' + str(alive) if alive else ''}",
              flush=True)
    return code


async def _ask(addrs: list[str], question: str, max_new: int) -> int:
    from .generation import Generation, GenerationFailed, SeekerNet
    from .identity import Identity
    from .net.host import running_host
    from .peerview import PeerView
    from .roles.seeker import discover
    from .routing import Params

    async with running_host(Identity.generate()) as host:
        view = PeerView()
        net = SeekerNet(host, view)
        problems = await discover(net, view, addrs)
        if problems:
            raise UserError("workers unreachable: " + "; ".join(problems))
        gen = Generation(net, view, Params(), "g-trac", rng=random.Random(0))
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
            return 0
        except GenerationFailed as e:
            await gen.cancel()
            print(f"\ngtracd demo: generation failed: {e}", file=sys.stderr)
            return 1
