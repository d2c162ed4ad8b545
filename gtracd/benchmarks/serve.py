"""`gtracd bench serve`: the seeker as a service under load, through the HTTP API and the `openai` client.

3 SmolLM2 workers on loopback (layers 0:10, 10:20, 20:30, one torch thread each); the seeker's service and
API run in this process on 127.0.0.1 (the clients too: on this 2-core machine a separate client process
would only add a process to schedule). Per concurrency level C: C streaming chat requests at once, each with
its own prompt (no reuse), 64 tokens with EOS ignored; aggregate decode tok/s = completion tokens / wall
time, time to first token (the first chunk: the role, sent with the first token) and inter-token latency
(gaps between content chunks), p50 and p99. Every level runs once per round (`--rounds`); a level's figures
are its median round, `batch_speedup_8` the median of each round's own ratio of concurrency 8 to 1. Then
the last round's concurrent answers are compared with the same requests answered one at a time (greedy:
batching must not change them).

Reuse: a conversation of ~500 tokens (a long system message, a question, its answer), then the next turn:
TTFT when the seeker kept the conversation (only the new suffix is prefilled) vs a seeker that keeps
nothing (the whole prompt is prefilled), alternated, the median of each. Both figures are ratios measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import trio

from ..config import Settings
from ..control.peerview import PeerView
from ..engine.models import resolve_model
from ..harness.launch import start_workers, stop_all
from ..identity import Identity
from ..net.host import running_host
from ..seeker.api.app import Api
from ..seeker.api.server import serve_api
from ..seeker.generation import SeekerNet
from ..seeker.service import SeekerService, discover
from .ledger import _pct

CONTEXT = ("gtracd routes each request through a chain of workers chosen by a risk-bounded shortest path. "
           "Workers host contiguous layer ranges of a transformer and keep a KV cache per session. Seekers "
           "report every outcome to replicated anchors, which fold the reports into trust. ") * 9


async def _stream(client, model: str, messages: list[dict], max_tokens: int) -> dict:
    t0 = time.perf_counter()
    first, stamps, usage, text = None, [], None, []
    stream = await client.chat.completions.create(model=model, messages=messages, max_tokens=max_tokens,
                                                  stream=True, stream_options={"include_usage": True},
                                                  extra_body={"ignore_eos": True})
    async for ch in stream:
        now = time.perf_counter()
        if first is None:
            first = now - t0
        if ch.choices and ch.choices[0].delta.content:
            stamps.append(now)
            text.append(ch.choices[0].delta.content)
        if ch.usage is not None:
            usage = ch.usage
    return {"ttft_s": first, "itl_s": [b - a for a, b in zip(stamps, stamps[1:], strict=False)],
            "tokens": usage.completion_tokens if usage else len(stamps), "wall_s": time.perf_counter() - t0,
            "text": "".join(text),
            "cached": usage.prompt_tokens_details.cached_tokens if usage else None,
            "prompt_tokens": usage.prompt_tokens if usage else None}


def _ask(seed: int, i: int) -> list[dict]:
    return [{"role": "user", "content": f"Request {seed}-{i}: write a few sentences about the number {i}."}]


async def _level(client, model: str, c: int, tokens: int, seed: int) -> dict:
    out: list[dict] = []
    texts: dict[int, str] = {}

    async def one(i: int) -> None:
        r = await _stream(client, model, _ask(seed, i), tokens)
        out.append(r)
        texts[i] = r["text"]

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        for i in range(c):
            n.start_soon(one, i)
    wall = time.perf_counter() - t0
    ttft = [r["ttft_s"] for r in out]
    itl = [x for r in out for x in r["itl_s"]]
    total = sum(r["tokens"] for r in out)
    return {"concurrency": c, "requests": c, "completion_tokens": total, "wall_s": round(wall, 2),
            "aggregate_tok_s": round(total / wall, 2), "texts": [texts[i] for i in range(c)],
            "ttft_p50_s": round(statistics.median(ttft), 3), "ttft_p99_s": round(_pct(ttft, 0.99), 3),
            "itl_p50_ms": round(1e3 * statistics.median(itl), 1) if itl else None,
            "itl_p99_ms": round(1e3 * _pct(itl, 0.99), 1) if itl else None}


async def _reuse(make_seeker, model: str, rounds: int) -> dict:
    """TTFT of a conversation's next turn with the first turn's caches kept vs none kept."""
    base = [{"role": "system", "content": CONTEXT},
            {"role": "user", "content": "In one sentence, what do workers keep per session?"}]
    keep, none_ = await make_seeker(8), await make_seeker(0)
    with_reuse, without = [], []
    prompt_tokens = None
    for r in range(rounds):
        msgs = base[:1] + [{"role": "user", "content": f"({r}) " + base[1]["content"]}]
        first = await _stream(keep.client, model, msgs, 16)  # leaves the conversation open on `keep`
        follow = msgs + [{"role": "assistant", "content": first["text"]},  # what the seeker kept
                         {"role": "user", "content": "And what do anchors do?"}]
        a = await _stream(keep.client, model, follow, 8)
        b = await _stream(none_.client, model, follow, 8)  # the same prompt, prefilled whole
        assert a["cached"] and a["cached"] >= first["prompt_tokens"] // 2, "the second turn did not reuse"
        with_reuse.append(a["ttft_s"])
        without.append(b["ttft_s"])
        prompt_tokens = a["prompt_tokens"]
    w, wo = statistics.median(with_reuse), statistics.median(without)
    return {"prompt_tokens": prompt_tokens, "ttft_reuse_s": round(w, 3), "ttft_no_reuse_s": round(wo, 3),
            "reuse_ttft_speedup": round(wo / w, 2), "rounds": rounds}


async def _run(addrs: list[str], levels: list[int], tokens: int, rounds: int, log) -> dict:
    import openai


    model = "smollm2-135m"
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        class Seeker:
            pass

        async def make_seeker(keep: int):
            view = PeerView()
            net = SeekerNet(host, view)
            problems = await discover(net, view, addrs)
            if problems:
                raise RuntimeError(f"workers unreachable: {problems}")
            svc = SeekerService(net, view, Settings(max_length=2048), keep=keep, max_requests=64)
            urls = await n.start(serve_api, Api(svc, model, max_tokens_cap=2048), "127.0.0.1:0")
            sk = Seeker()
            sk.service = svc
            sk.client = openai.AsyncOpenAI(base_url=urls[0] + "/v1", api_key="-", max_retries=0, timeout=600)
            return sk

        # the levels reuse nothing: keep no conversations (kept ones hold a stream per hop, and a worker
        # allows a remote peer 16 streams: --peer-streams)
        main = await make_seeker(0)
        await _stream(main.client, model, [{"role": "user", "content": "Warm up."}], 8)
        runs: dict[int, list[dict]] = {c: [] for c in levels}
        for r in range(rounds):  # every level once per round: a round's ratios are measured together
            for i, c in enumerate(levels):
                x = await _level(main.client, model, c, tokens, 100 * r + i)
                runs[c].append(x)
                log(f"  round {r + 1}, concurrency {c}: {x['aggregate_tok_s']} tok/s in total, TTFT p50 "
                    f"{x['ttft_p50_s']} s p99 {x['ttft_p99_s']} s, inter-token p50 {x['itl_p50_ms']} ms p99 "
                    f"{x['itl_p99_ms']} ms")
        # the batched answers are the answers each request gets alone (greedy; engine/batching.py)
        top, last = max(levels), 100 * (rounds - 1) + len(levels) - 1
        together = runs[top][-1].pop("texts")
        alone = [(await _stream(main.client, model, _ask(last, i), tokens))["text"] for i in range(top)]
        same = sum(a == b for a, b in zip(alone, together, strict=True))
        log(f"  {same} of {top} answers given concurrently equal the answers given alone")
        res = {}
        for c in levels:
            xs = runs[c]
            for x in xs:
                x.pop("texts", None)
            med = sorted(xs, key=lambda x: x["aggregate_tok_s"])[len(xs) // 2]
            res[c] = {**med, "aggregate_tok_s_rounds": [x["aggregate_tok_s"] for x in xs]}
        reuse = await _reuse(make_seeker, model, rounds)
        log(f"  reuse: next turn of a {reuse['prompt_tokens']}-token conversation: TTFT {reuse['ttft_reuse_s']} s "
            f"kept vs {reuse['ttft_no_reuse_s']} s prefilled whole ({reuse['reuse_ttft_speedup']}x)")
        n.cancel_scope.cancel()
    def speedup(c: int) -> float | None:  # the median over rounds of each round's own ratio
        if c not in runs or 1 not in runs:
            return None
        ratios = sorted(a["aggregate_tok_s"] / b["aggregate_tok_s"] for a, b in zip(runs[c], runs[1], strict=True))
        return round(ratios[len(ratios) // 2], 2)

    return {"model": model, "hops": 3, "tokens_per_request": tokens, "rounds": rounds, "levels": res,
            "reuse": reuse, "batch_speedup_8": speedup(8), f"speedup_{max(levels)}": speedup(max(levels)),
            "answers_equal_alone": f"{same}/{top}",
            "reuse_ttft_speedup": reuse["reuse_ttft_speedup"],
            "goals": {"batch_speedup_8": 3.0, "reuse_ttft_speedup": 3.0}}


def main(args: argparse.Namespace) -> int:

    say = (lambda *a, **k: None) if args.json else print
    levels = sorted({int(x) for x in args.concurrency.split(",") if x.strip()})
    if 1 not in levels:
        levels = [1] + levels
    resolve_model("smollm2-135m", log=say)
    ws = start_workers("smollm2-135m", [(0, 10), (10, 20), (20, 30)],
                       extra=["--max-sessions", "64", "--cache-tokens", "131072"])
    try:
        say(f"serve: 3 SmolLM2 workers, concurrency {levels}, {args.tokens} tokens per request")
        res = trio.run(_run, [w.addr for w in ws], levels, args.tokens, args.rounds, say)
    finally:
        stop_all(ws)
    res["cpus"] = os.cpu_count()
    if args.record:
        with open(args.record, "w") as f:
            json.dump(res, f, indent=1)
            f.write("\n")
    print(json.dumps(res) if args.json else f"batch_speedup_8 {res['batch_speedup_8']} (goal >= 3), "
          f"reuse_ttft_speedup {res['reuse_ttft_speedup']} (goal >= 3), answers equal alone "
          f"{res['answers_equal_alone']}")
    return 0
