"""`gtracd bench pipeline`: the data plane measured in one run on this machine.

K workers on loopback host SmolLM2 shards (one torch thread each); the seeker generates N greedy tokens
for a fixed prompt. Measured in the same run: distributed vs monolithic decode tokens/s (monolithic
transformers in its own process, same thread settings), prefill latency, per-hop overhead (seeker-measured
hop time minus the worker's compute time), a recompute mode (whole prefix resent every token, no KV cache),
time to the next token after `kill -9` of a middle worker that has a replacement, and peak RSS (VmHWM).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

import trio

from ..catalog.fingerprint import depth
from ..control.peerview import PeerView
from ..daemon.lifeline import child_env, watch_parent
from ..daemon.node import status_mib
from ..engine import set_threads
from ..engine.models import resolve_model
from ..harness.launch import start_workers, stop_all, worker_env
from ..identity import Identity
from ..net.host import running_host
from ..routing import Params
from ..seeker.generation import Generation, SeekerNet
from ..seeker.main import discover
from .common import print_table

# A realistic assistant request: chat template (with its system prompt) around a paragraph of context.
MESSAGES = [{"role": "user", "content": (
    "Here are my notes from the trip: we left Lisbon early on Monday, drove along the coast to Porto, "
    "stopped in Coimbra for lunch at the university, visited two wineries in the Douro valley on Tuesday, "
    "took the train back on Wednesday evening and lost a suitcase at the station, which turned up the next "
    "morning. Write a cheerful story about this trip for my grandchildren.")}]


def vmhwm_mib(pid: int | str = "self") -> float:
    return status_mib(pid, "VmHWM")


def split(layers: int, k: int) -> list[tuple[int, int]]:
    bounds = [round(i * layers / k) for i in range(k + 1)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def monolithic(model: str, tokens: int, messages: list[dict] = MESSAGES, repeats: int = 1) -> dict:
    """Runs in its own process (clean VmHWM): load the whole model, greedy decode `tokens` tokens after the
    chat `messages` with transformers; the fastest of `repeats` runs."""
    from ..engine.reference import chat_ids, greedy, load

    set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    folder = resolve_model(model)
    ids, _ = chat_ids(folder, messages)
    m = load(folder)
    run = min((greedy(m, ids, tokens) for _ in range(repeats)), key=lambda r: r.decode_s)
    return {"tok_s": (tokens - 1) / run.decode_s, "prefill_ms": run.prefill_ms, "peak_rss_mib": vmhwm_mib(),
            "tokens": run.tokens}


async def distributed(addrs: list[str], tokens: int, victim_after: int | None, kill) -> dict:
    async with running_host(Identity.generate()) as host:
        view = PeerView()
        net = SeekerNet(host, view)
        problems = await discover(net, view, addrs)
        if problems:
            raise RuntimeError("; ".join(problems))

        async def run(recompute=False, n=tokens, victim=None):
            gen = Generation(net, view, Params(), rng=random.Random(0))
            await gen.start()
            ids = await gen.tokenize(messages=MESSAGES)
            arrivals: list[float] = []

            def on_piece(_):
                arrivals.append(time.perf_counter())
                if victim is not None and len(arrivals) == victim:
                    kill(gen.hops[len(gen.hops) // 2].peer.peer_id)

            t0 = time.perf_counter()
            r = await gen.turn(ids, n, on_piece, ignore_eos=True, recompute=recompute)
            total = time.perf_counter() - t0
            overhead = [statistics.median([w - c for w, c in zip(h.step_ms, h.compute_ms, strict=True)])
                        for h in gen.hops if h.step_ms]
            await gen.aclose()
            return gen, r, arrivals, total, overhead

        gen, r, _, _, overhead = await run()
        out = {"tokens": r.tokens, "tok_s": len(r.step_ms) / (sum(r.step_ms) / 1e3), "prefill_ms": r.prefill_ms,
               "per_hop_overhead_ms": statistics.mean(overhead), "prompt_tokens": len(gen.fed) - len(r.tokens) + 1,
               "hop_compute_ms": [round(statistics.median(h.compute_ms), 2) for h in gen.hops],
               "step_ms_median": round(statistics.median(r.step_ms), 2)}
        _, rr, _, _, _ = await run(recompute=True)
        out["recompute_tok_s"] = len(rr.step_ms) / (sum(rr.step_ms) / 1e3)
        out["recompute_tokens"] = rr.tokens
        if victim_after is not None:
            gen2, r2, arrivals, _, _ = await run(victim=victim_after)
            gaps = [b - a for a, b in zip(arrivals, arrivals[1:], strict=False)]
            out["repair_next_token_s"] = gaps[victim_after - 1] if len(gaps) >= victim_after else float("nan")
            out["repair_tokens_identical"] = r2.tokens == r.tokens
            out["repairs"] = gen2.repair_log
        return out


def run(hops: int, tokens: int, model: str) -> dict:
    folder = resolve_model(model, log=lambda m: print(m, file=sys.stderr))
    L = depth(folder)
    env = child_env(worker_env())  # ends with this benchmark
    mono = json.loads(subprocess.run([sys.executable, "-m", "gtracd.benchmarks.pipeline", "--monolithic", model,
                                      str(tokens)], capture_output=True, text=True, env=env, check=True).stdout)
    ranges = split(L, hops)
    mid = len(ranges) // 2
    ws = start_workers(model, ranges + [ranges[mid]])  # the last one is the middle hop's replacement
    killed: dict = {}
    try:
        by_id = {w.peer_id: w for w in ws}

        def kill(pid):
            w = by_id[pid]
            killed["rss"] = vmhwm_mib(w.info["pid"])
            killed["range"] = (w.info["start"], w.info["end"])
            w.kill9()

        rss_before = {w.peer_id: None for w in ws}
        d = trio.run(distributed, [w.addr for w in ws], tokens, tokens // 2 if hops >= 2 else None, kill)
        for w in ws:
            if w.proc.poll() is None:
                rss_before[w.peer_id] = vmhwm_mib(w.info["pid"])
    finally:
        stop_all(ws)
    mid_rss = killed.get("rss") or max(v for v in rss_before.values() if v)
    return {
        "hops": hops, "tokens": tokens,
        "distributed_tok_s": round(d["tok_s"], 2), "monolithic_tok_s": round(mono["tok_s"], 2),
        "ratio": round(d["tok_s"] / mono["tok_s"], 3),
        "prefill_ms": round(d["prefill_ms"], 1), "monolithic_prefill_ms": round(mono["prefill_ms"], 1),
        "per_hop_overhead_ms": round(d["per_hop_overhead_ms"], 3),
        "prompt_tokens": d["prompt_tokens"], "hop_compute_ms": d["hop_compute_ms"],
        "step_ms_median": d["step_ms_median"], "monolithic_step_ms": round(1e3 / mono["tok_s"], 2),
        "recompute_tok_s": round(d["recompute_tok_s"], 2),
        "kv_over_recompute": round(d["tok_s"] / d["recompute_tok_s"], 2),
        "repair_next_token_s": round(d.get("repair_next_token_s", float("nan")), 3),
        "repair_tokens_identical": d.get("repair_tokens_identical"),
        "worker_peak_rss_mib": round(mid_rss, 1),
        "worker_layers": f"{killed.get('range', ranges[mid])[0]}:{killed.get('range', ranges[mid])[1]}",
        "all_worker_peak_rss_mib": {f"{w.info['start']}:{w.info['end']}": round(v, 1) for w in ws
                                    if (v := rss_before.get(w.peer_id))},
        "monolithic_peak_rss_mib": round(mono["peak_rss_mib"], 1),
        "tokens_match_monolithic": d["tokens"] == mono["tokens"],
        "recompute_tokens_match": d["recompute_tokens"] == d["tokens"],
    }


def main(args: argparse.Namespace) -> int:
    res = run(args.hops, args.tokens, args.model or "smollm2-135m")
    if args.json:
        print(json.dumps(res))
        return 0
    print_table(f"pipeline: {res['hops']} hops, {res['tokens']} greedy tokens (SmolLM2-135M, fp32, 1 thread/process)",
                res)
    return 0


if __name__ == "__main__":
    watch_parent()
    if len(sys.argv) == 4 and sys.argv[1] == "--monolithic":
        print(json.dumps(monolithic(sys.argv[2], int(sys.argv[3]))))
