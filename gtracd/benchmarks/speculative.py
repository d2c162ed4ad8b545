"""`gtracd bench speculative`: speculative decoding through a 3-hop SmolLM2 chain, measured in one run.

Two tasks: one where prompt-lookup drafts help (the model rewrites a given function: adds its docstring and
returns it whole) and one where they do not (an open-ended story). Each is generated greedily, up to its end
of turn, with speculation `off` and `auto`, alternating, REPEATS times; tok/s is decode tokens over decode
time (the prefill excluded), medians. Plain monolithic transformers
(its own process, one thread, the same prompt) decodes the rewriting task in the same run, for
`ratio_vs_monolithic_repetitive`. Goals (issue 26): speedup_repetitive >= 1.6, speedup_open >= 0.95,
ratio_vs_monolithic_repetitive >= 1.0, tokens identical with and without speculation.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys

import trio

from ..catalog.fingerprint import depth
from ..daemon.lifeline import child_env, watch_parent
from ..engine.models import resolve_model
from ..harness.launch import start_workers, stop_all, worker_env
from ..routing import Params
from ..seeker.generation import Generation
from .common import print_table, seeker_of
from .pipeline import monolithic, split

CODE = """def merge_sorted(a, b):
    result = []
    i = j = 0
    while i < len(a) and j < len(b):
        if a[i] <= b[j]:
            result.append(a[i])
            i += 1
        else:
            result.append(b[j])
            j += 1
    result.extend(a[i:])
    result.extend(b[j:])
    return result"""
TASKS = {  # rewriting a given text (drafts hold), and an open-ended story (they rarely do)
    "repetitive": [{"role": "user", "content": "Add a docstring to this Python function and return the complete "
                                               f"function.\n\n```python\n{CODE}\n```"}],
    "open": [{"role": "user", "content": "Write a short story about a dragon who learns to bake bread."}],
}
REPEATS = 3
GOALS = {"speedup_repetitive": 1.6, "speedup_open": 0.95, "ratio_vs_monolithic_repetitive": 1.0}


async def distributed(addrs: list[str], tokens: int, repeats: int) -> dict:
    async with seeker_of(addrs) as (net, view):
        out: dict = {}
        for task, messages in TASKS.items():
            runs: dict[str, list] = {"off": [], "auto": []}
            for _ in range(repeats):
                for mode in ("off", "auto"):
                    gen = Generation(net, view, Params(), rng=random.Random(0), speculate=mode)
                    ids = await gen.tokenize(messages=messages)
                    r = await gen.turn(ids, tokens)
                    runs[mode].append({"tokens": r.tokens, "tok_s": len(r.step_ms) / (sum(r.step_ms) / 1e3),
                                       **gen.speculation.counters,
                                       "per_trip": gen.speculation.accepted_per_trip()})
                    await gen.aclose()
            ref = runs["off"][0]["tokens"]
            out[task] = {
                "off_tok_s": statistics.median(x["tok_s"] for x in runs["off"]),
                "auto_tok_s": statistics.median(x["tok_s"] for x in runs["auto"]),
                "identical": all(x["tokens"] == ref for m in runs.values() for x in m),
                "accepted_per_trip": statistics.median(x["per_trip"] for x in runs["auto"]),
                "trips": runs["auto"][0]["trips"], "drafted": runs["auto"][0]["drafted"],
                "accepted": runs["auto"][0]["accepted"], "tokens": ref,
            }
        return out


def run(tokens: int, model: str, repeats: int = REPEATS) -> dict:
    folder = resolve_model(model, log=lambda m: print(m, file=sys.stderr))
    env = child_env(worker_env())
    mono = json.loads(subprocess.run([sys.executable, "-m", "gtracd.benchmarks.speculative", "--monolithic", model,
                                      str(tokens)], capture_output=True, text=True, env=env, check=True).stdout)
    ws = start_workers(model, split(depth(folder), 3))
    try:
        d = trio.run(distributed, [w.addr for w in ws], tokens, repeats)
    finally:
        stop_all(ws)
    rep, opn = d["repetitive"], d["open"]
    res = {
        "hops": 3, "tokens": tokens, "repeats": repeats,
        "repetitive_off_tok_s": round(rep["off_tok_s"], 2), "repetitive_auto_tok_s": round(rep["auto_tok_s"], 2),
        "open_off_tok_s": round(opn["off_tok_s"], 2), "open_auto_tok_s": round(opn["auto_tok_s"], 2),
        "monolithic_tok_s": round(mono["tok_s"], 2),
        "speedup_repetitive": round(rep["auto_tok_s"] / rep["off_tok_s"], 3),
        "speedup_open": round(opn["auto_tok_s"] / opn["off_tok_s"], 3),
        "ratio_vs_monolithic_repetitive": round(rep["auto_tok_s"] / mono["tok_s"], 3),
        "accepted_per_trip": {"repetitive": round(rep["accepted_per_trip"], 2),
                              "open": round(opn["accepted_per_trip"], 2)},
        "drafts": {t: {"trips": d[t]["trips"], "drafted": d[t]["drafted"], "accepted": d[t]["accepted"]}
                   for t in TASKS},
        "tokens_identical": {"repetitive": rep["identical"], "open": opn["identical"]},
        "tokens_match_monolithic": rep["tokens"] == mono["tokens"][:len(rep["tokens"])],
        "generated": {t: len(d[t]["tokens"]) for t in TASKS},
    }
    res["goals_met"] = all(res[k] >= v for k, v in GOALS.items()) and all(res["tokens_identical"].values())
    return res


def main(args: argparse.Namespace) -> int:
    res = run(args.tokens, args.model or "smollm2-135m", args.repeats)
    if args.json:
        print(json.dumps(res))
        return 0
    print_table(f"speculative decoding: 3 hops, up to {res['tokens']} greedy tokens, auto vs off (SmolLM2-135M)", res)
    return 0


if __name__ == "__main__":
    watch_parent()
    if len(sys.argv) == 4 and sys.argv[1] == "--monolithic":
        # in its own process: plain greedy decoding of the rewriting task with transformers
        print(json.dumps(monolithic(sys.argv[2], int(sys.argv[3]), TASKS["repetitive"], REPEATS)))
