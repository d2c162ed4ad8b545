"""`gtracd --role seeker generate ...`: generate text through a chain of workers.

    gtracd --role seeker generate --prompt TEXT [--prompt TEXT ...] --peer MULTIADDR ...
    gtracd --role seeker generate --chat [--turn TEXT ...] --peer ...     (stdin when no --turn)
    gtracd --role seeker generate --prompt TEXT --bootstrap ANCHOR_MULTIADDR   (workers found by heartbeats)
    gtracd --role seeker serve [--testbed-reports RATE]                       (keep the cache; status)
    gtracd --role seeker serve --http 127.0.0.1:8080 --bootstrap ...          (the OpenAI-compatible API)

With a bootstrap list the seeker joins the network's gossip: workers come from heartbeats, trust and latency
from its ledger replica (synced from keyring anchors in the background), and after each request it sends a
signed trust report to the anchors (gossip + a direct stream; an fsync'd outbox keeps it until acknowledged).

The seeker serves one model, `--model` (default smollm2-135m; a folder or a fingerprint also work), and
routes only to workers announcing it. A share of hops (`--spot-check-rate`) is re-executed on another
replica and a worker caught returning wrong output is replaced and reported (seeker/checker.py).

Several --prompt values run concurrently. --chat keeps the conversation as token ids and the workers' KV
caches across turns, so only new tokens are prefilled. Ctrl-C cancels the sessions on every hop.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import TYPE_CHECKING

import trio

from ..config import add_setting_flags
from ..control.replica import RULE_SETTINGS
from ..daemon import runtime as common
from ..errors import UserError
from ..net.addresses import first_addr
from ..wire.text import shown, shown_text
from .api.app import Api
from .api.server import check_bind, read_api_key, serve_api
from .generation import Generation, GenerationFailed
from .recent import Recent
from .running import RunningSeeker, running_seeker
from .service import Request, SeekerService, discover, routing_params, wait_for_route
from .testload import synthetic_reports

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.identity import Identity

log = logging.getLogger("gtracd.seeker")
SETTINGS = ["model", "mode", "trust_floor", "penalty_ms", "larac_min_reliability", "max_new_tokens", "max_length",
            "hop_timeout_floor_s", "hop_timeout_factor", "request_timeout_s", "sync_s", "node_timeout_s",
            "spot_check_rate", "spot_check_calls", "spot_check_probation", "heal_wait_s", "forget_after_s", "route_wait_s",
            "speculate", "quantize", "wire_dtype",
            *RULE_SETTINGS]


def build_parser():
    p = common.parser("seeker", "Generate text through a trust-aware chain of workers.", [])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=common.RoleParser)
    g = sub.add_parser("generate", help="generate text")
    g.add_argument("--prompt", action="append", default=[], help="a prompt; repeat to run several concurrently")
    g.add_argument("--chat", action="store_true", help="apply the model's chat template; multi-turn with --turn/stdin")
    g.add_argument("--turn", action="append", default=[], help="with --chat: scripted user turns, in order")
    g.add_argument("--peer", action="append", default=[], help="worker multiaddr /ip4/../tcp/../p2p/ID (repeat)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--json", action="store_true", help="print one JSON object per generation instead of text")
    g.add_argument("--quiet", action="store_true", help="no status lines on stderr")
    add_setting_flags(g, SETTINGS)  # routing settings are also accepted after the subcommand
    v = sub.add_parser("serve", help="keep the ledger replica and liveness view synced; write status")
    v.add_argument("--testbed-reports", type=float, default=0.0, metavar="RATE",
                   help="testbed load: emit RATE synthetic trust reports/s over live identities (see gtracd.seeker.testload)")
    v.add_argument("--events", help="append a JSON-lines trace of ledger events here (tests, benchmarks)")
    v.add_argument("--http", metavar="HOST:PORT", help="serve the OpenAI-compatible API here (e.g. 127.0.0.1:8080; "
                                                       "any other host than loopback needs --api-key-file)")
    v.add_argument("--api-key-file", metavar="FILE", help="clients must send this file's key as a bearer token")
    v.add_argument("--max-requests", type=int, default=16, help="requests served at once (more get 429)")
    v.add_argument("--keep-contexts", type=int, default=8,
                   help="conversations kept open for reuse (each holds a KV cache on its chain's workers)")
    add_setting_flags(v, SETTINGS)
    return p


async def run_generate(args: argparse.Namespace, s: Settings, ident: Identity, name: str) -> int:
    if not args.peer and not s.bootstrap and s.discover == "off":
        raise UserError("no workers given: --peer MULTIADDR (repeat), --bootstrap ANCHOR_MULTIADDR, or --discover "
                        "mdns on a LAN")
    if not args.prompt and not args.chat:
        raise UserError("give --prompt TEXT (repeatable) or --chat")
    sampling = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed}
    status = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    return await _run_generate(args, s, ident, name, sampling, status)


async def _run_generate(args: argparse.Namespace, s: Settings, ident: Identity, name, sampling, status) -> int:
    # on a network (bootstrap): heartbeats, ledger replica, trust reports (the follower)
    async with running_seeker(name, ident, s, persistent_peerstore=not args.ephemeral) as sk:
        node, view, net, cache = sk.node, sk.view, sk.net, sk.cache
        recent = Recent()
        node.status_parts.append(recent.status)
        if cache is None:  # workers given by --peer: the view is this seeker's own
            node.status_parts.append(lambda: {"workers": view.status_rows(time.monotonic()),
                                              "trust_floor": s.trust_floor})
        if args.peer:
            problems = await discover(net, view, args.peer)
            for pr in problems:
                status(f"gtracd: worker unreachable: {shown(pr)}")
        if not view.workers or (cache is not None and not args.peer):
            if not await wait_for_route(view, routing_params(s), s.mode, s.node_timeout_s):
                raise UserError("no live chain covering every layer was heard within "
                                f"{s.node_timeout_s:g}s (are workers up and bootstrapped to the same network?)")
        try:
            return await _generate(args, s, sk, sampling, status, recent)
        finally:
            if cache is not None:
                with trio.CancelScope(shield=True):
                    left = await cache.drain(5.0)
                if left:
                    status(f"gtracd: {left} trust report(s) kept in the outbox for the next run (no anchor answered)")


async def _generate(args: argparse.Namespace, s: Settings, sk: RunningSeeker, sampling: dict, status, recent: Recent) -> int:
    """`generate`: every prompt (or chat turn) is a request of the seeker's request service, as the HTTP API's
    are: the same generation, repair, reports and kept conversations."""
    service = SeekerService(sk.net, sk.view, s, sk.cache, recent, max_requests=max(1, len(args.prompt)))
    try:
        if args.chat:
            return await _chat(args, s, service, sampling, status)
        return await _prompts(args, s, service, sampling, status)
    finally:
        await service.aclose()


def _request(s: Settings, sampling: dict, **what) -> Request:
    return Request(max_tokens=s.max_new_tokens, temperature=sampling["temperature"], top_p=sampling["top_p"],
                   top_k=sampling["top_k"], seed=sampling["seed"], **what)


def _write(text: str) -> None:
    """Generated text to the terminal: what the last hop returned, shown literally (wire/text.shown_text)."""
    sys.stdout.write(shown_text(text))
    sys.stdout.flush()


async def _prompts(args: argparse.Namespace, s: Settings, service: SeekerService, sampling: dict, status) -> int:
    results: list[dict | None] = [None] * len(args.prompt)
    streaming = len(args.prompt) == 1 and not args.json

    def chain_line(gen: Generation) -> None:
        status(f"gtracd: chain ({s.mode}, selected in {gen.selection_ms:.3f} ms): {_chain_line(gen)}")

    async def one(i: int, prompt: str) -> None:
        try:
            c = await service.complete(_request(s, sampling, prompt=prompt), _write if streaming else None,
                                       chain_line)
        except GenerationFailed as e:
            results[i] = {"prompt": prompt, "error": str(e)}
            return
        results[i] = {"prompt": prompt, "text": c.text, "tokens": c.token_ids, "chain": c.chain,
                      "prefill_ms": c.prefill_ms, "tok_s": (len(c.step_ms) / (sum(c.step_ms) / 1e3))
                      if c.step_ms else None, "repairs": c.repair_log, "selection_ms": c.selection_ms,
                      "hop_latency_ms": c.hop_latency_ms, "bytes_per_step_per_hop": c.provenance.get("bytes_per_step_per_hop")}

    async with trio.open_nursery() as n:
        for i, prm in enumerate(args.prompt):
            n.start_soon(one, i, prm)
    for r in results:
        if args.json:
            print(json.dumps(r))
        elif "error" in r:
            print(f"gtracd: generation failed: {shown(r['error'])}", file=sys.stderr)
        elif streaming:
            print()
            _stats(status, r)
        else:
            print(f"--- {shown(r['prompt'])}\n{shown_text(r['text'])}")
            _stats(status, r)
    return 1 if any("error" in r for r in results) else 0


def _chain_line(gen: Generation) -> str:
    """The chain as a terminal line; names came from heartbeats (the schema refuses control characters in
    them, and this shows any that got through as U+FFFD)."""
    return " -> ".join(f"{shown(h.peer.name or h.peer.peer_id[-8:])}[{h.peer.start}:{h.peer.end}]" for h in gen.hops)


def _stats(status, r: dict) -> None:
    tok_s = f"{r['tok_s']:.1f} tok/s" if r.get("tok_s") else "-"
    rep = f", {len(r['repairs'])} repair(s)" if r["repairs"] else ""
    status(f"gtracd: {len(r['tokens'])} tokens, prefill {r['prefill_ms']:.0f} ms, {tok_s}{rep}")


async def _chat(args: argparse.Namespace, s: Settings, service: SeekerService, sampling: dict, status) -> int:
    """Each turn is a request with the conversation so far; the service keeps the conversation's chain open,
    so a turn prefills only what is new."""
    messages: list[tuple[str, str]] = []
    turns = list(args.turn) + list(args.prompt)
    interactive = not turns
    while True:
        if interactive:
            line = await trio.to_thread.run_sync(_readline, abandon_on_cancel=True)
            if line is None:
                break
            user = line.strip()
            if not user:
                continue
        else:
            if not turns:
                break
            user = turns.pop(0)
            if not args.json:
                print(f"> {user}")
        messages.append(("user", user))
        try:
            c = await service.complete(_request(s, sampling, messages=tuple(messages)),
                                       None if args.json else _write,
                                       lambda gen: status(f"gtracd: chain: {_chain_line(gen)}"))
        except GenerationFailed as e:
            print(f"gtracd: generation failed: {shown(e)}", file=sys.stderr)
            return 1
        messages.append(("assistant", c.text))
        if args.json:
            print(json.dumps({"user": user, "text": c.text, "tokens": c.token_ids, "prompt_tokens": c.prompt_tokens,
                              "cached_before": c.reused_tokens, "repairs": c.repair_log}))
        else:
            print()
            status(f"gtracd: {c.completion_tokens} tokens; prompt {c.prompt_tokens} tokens, {c.reused_tokens} "
                   "already cached")
    return 0


def _readline():
    try:
        sys.stderr.write("you> ")
        sys.stderr.flush()
        line = sys.stdin.readline()
        return line if line else None
    except (OSError, ValueError):
        return None


async def run_serve(args: argparse.Namespace, s: Settings, ident: Identity, name: str) -> int:
    async with trio.open_nursery() as outer:
        outer.start_soon(common.until_signalled, outer.cancel_scope)
        await _serve_node(args, s, ident, name)
    return 0


async def _serve_node(args: argparse.Namespace, s: Settings, ident: Identity, name) -> None:
    api_key = bind = None
    if args.http:
        api_key = read_api_key(args.api_key_file)
        bind = check_bind(args.http, api_key)  # refused before anything starts
    async with running_seeker(name, ident, s, events=args.events, persistent_peerstore=not args.ephemeral,
                              follow=True) as sk:
        node, cache = sk.node, sk.cache
        service = None
        try:
            if args.testbed_reports > 0:
                node.nursery.start_soon(synthetic_reports, cache, args.testbed_reports, routing_params(s), s.network)
            urls: list[str] = []
            if bind is not None:
                service, urls = await _start_api(sk, s, args, bind, api_key)
            common.write_ready(args.ready_file, {"role": "seeker", "peer_id": ident.peer_id, "addrs": node.addrs,
                                                 "name": name, "pid": os.getpid(), "http": urls})
            api = f", API at {urls[0]}/v1" if urls else ""
            print(f"gtracd seeker {name} ready: {first_addr(node.addrs)} ({len(cache.replica.ledger)} reports cached, "
                  f"{len(cache.anchors)} keyring anchors{api})", file=sys.stderr, flush=True)
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                if service is not None:
                    await service.aclose()
                await cache.drain(2.0)


async def _start_api(sk: RunningSeeker, s: Settings, args: argparse.Namespace, bind: str, api_key: str | None):
    """The service over this seeker's view and cache, and the HTTP API serving it in the node's nursery."""
    node = sk.node
    recent = Recent()
    node.status_parts.append(recent.status)
    service = SeekerService(sk.net, sk.view, s, sk.cache, recent, keep=args.keep_contexts,
                            max_requests=args.max_requests)
    api = Api(service, s.model, api_key, max_tokens_cap=s.max_length, default_max_tokens=s.max_new_tokens)
    node.status_parts.append(lambda: {**service.status(), "api": dict(api.counters)})
    urls = await node.nursery.start(serve_api, api, bind)
    return service, urls


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    s = common.settings_from(args, SETTINGS)
    common.setup_logging(args.log_level, s)
    ident = common.identity(args, s, "seeker")
    name = args.name or s.key or "seeker"
    if args.cmd == "serve":
        try:
            return trio.run(run_serve, args, s, ident, name)
        except KeyboardInterrupt:
            return 0
    return trio.run(run_generate, args, s, ident, name)
