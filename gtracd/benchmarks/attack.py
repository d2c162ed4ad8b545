"""`gtracd bench attack`: each attack of issue 10 (here) and of issue 23 (benchmarks/trust2.py) against a live
loopback network of real daemons (benchmarks/attacknets.py).

The networks, each on loopback with its own keyring anchors:
- *workers*: 2 anchors and 2 real worker processes (`gtracd --role worker`, tiny-llama-4, layers 0:2 and 2:4).
  Spoofed identity, model hijack, session flood and the fuzzer run here, against a seeker in this process.
- *lab*: 2 anchors and 5 lab host processes (`gtracd lab host`), one virtual peer each: a golden peer on layers
  0-1 and 3, and on layer 2 a byzantine peer (fast, trusted, lies on 30 % of its calls) with two honest
  replicas on other hosts. Byzantine detection and false accusations run here.
- *cost*: 2 anchors and 6 real SmolLM2 workers (3 spans x 2 replicas): decode speed with and without checks.
- *ledger*: 3 anchors and a testbed fleet (worker identities that heartbeat). Established reporters, then 20
  fresh sybil reporters slander an honest worker and stuff ballots for a honey pot.

Every figure is measured in this run; the last line is JSON (`--json` prints only it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import msgpack
import trio

from ..control.heartbeat import Hosted, publish_heartbeats
from ..daemon.runtime import setup_logging
from ..engine.models import resolve_model
from ..errors import UserError
from ..identity import Identity, Keystore
from ..lab.sweep import new_epoch
from ..net.framing import FramedStream
from ..net.host import dial, open_stream
from ..net.ledgersync import submit
from ..net.protocols import INFER
from ..seeker.spotcheck import RTOL
from ..wire.envelope import Signer
from . import trust2
from .attacknets import (
    PROMPTS,
    LabNet,
    LedgerNet,
    WorkerNet,
    anchored_trust,
    attacker,
    cost_net,
    honest_requests,
    ledger_trust,
    say,
    settle,
    signed_report,
)

if TYPE_CHECKING:
    from libp2p.abc import IHost

    from gtracd.daemon.node import Node

GOALS = {"spoof_credit_gained": "== 0", "model_hijacked": "false", "flood_honest_success_rate": "== 1.0",
         "flood_honest_trust_drop": "== 0", "byzantine_requests_to_detect": "<= 20",
         "false_accusations": "== 0 over >= 1000 checked hops", "slander_honest_min_trust": ">= trust_floor",
         "ballot_stuffing_honeypot_max_trust": "< trust_floor", "fuzz_crashes": "== 0 over >= 1,000,000 cases",
         "spot_check_cost": "<= 0.10"}


# ---------------------------------------------------------------- network 1: real workers


async def spoof(net: WorkerNet, requests: int = 10) -> dict:
    """An identity advertises the honest worker's address for its own identity and layer range."""

    victim = net.workers[0].info
    async with attacker(net.cn.network, net.boot, net.root) as node, net.seeker() as sk:
        spoofer = Identity.generate()
        hosted = [Hosted(Signer(spoofer), victim["model"], victim["start"], victim["end"], victim["total_layers"],
                         victim["addrs"], "honest-looking")]
        node.nursery.start_soon(publish_heartbeats, node, hosted, 1.0)
        await sk.wait_alive(net.ids() + [spoofer.peer_id])
        before = ledger_trust(net.cn, "a1").get(spoofer.peer_id, sk.s.initial_trust)
        chosen = 0
        for i in range(requests):
            r = await sk.request(PROMPTS[i % len(PROMPTS)], 6, mode="naive")
            chosen += spoofer.peer_id in r.get("routed", [])
        await settle(sk)
        credited = sum(1 for b in sk.reports if b["outcome"] == "success" and spoofer.peer_id in b["chain"])
        after = ledger_trust(net.cn, "a1").get(spoofer.peer_id, sk.s.initial_trust)
        node.nursery.cancel_scope.cancel()
    return {"spoof_chosen": chosen, "spoof_success_reports": credited,
            "spoof_credit_gained": max(0.0, after - before) + credited}


async def hijack(net: WorkerNet, identities: int = 20, requests: int = 4) -> dict:
    """One process announces many identities covering the model with another fingerprint."""

    async with attacker(net.cn.network, net.boot, net.root) as node, net.seeker() as sk:
        fake = [Identity.generate() for _ in range(identities)]
        hosted = [Hosted(Signer(f), "f" * 32, 0, 4, 4, node.addrs, f"fast-{k}") for k, f in enumerate(fake)]
        node.nursery.start_soon(publish_heartbeats, node, hosted, 1.0)
        await sk.wait_alive(net.ids() + [f.peer_id for f in fake])
        fake_ids = {f.peer_id for f in fake}
        hijacked = False
        ok = 0
        for i in range(requests):
            r = await sk.request(PROMPTS[i], 6)
            hijacked |= bool(fake_ids & set(r["chain"]))
            ok += r["ok"]
        node.nursery.cancel_scope.cancel()
    return {"model_hijacked": hijacked, "hijack_announced_identities": identities,
            "hijack_honest_success_rate": ok / requests}


async def _flood_peer(host: IHost, addr: str, model: str, start: int, end: int, streams: int, stop: trio.Event,
                      counts: dict) -> None:
    """Open as many sessions as the worker grants on `streams` streams, fill their caches, keep them idle,
    and keep asking for more until told to stop."""

    pid = await dial(host, addr)

    async def one(k: int) -> None:
        try:
            fs = FramedStream(await open_stream(host, pid, INFER, 5.0))
        except Exception:
            counts["stream_refused"] += 1
            return
        try:
            while not stop.is_set():
                sid = os.urandom(16)
                await fs.send("open", {"session": sid, "model": model, "start": start, "end": end,
                                       "max_length": 2048}, 5.0)
                kind, body = await fs.read(5.0)
                if kind != "opened":
                    counts[body.get("code", kind)] = counts.get(body.get("code", kind), 0) + 1
                    with trio.move_on_after(0.3):
                        await stop.wait()
                    continue
                counts["opened"] += 1
                await fs.send("prefill", {"session": sid, "pos": 0, "tokens": [7] * 200}, 5.0)
                kind, body = await fs.read(10.0)
                counts["filled" if kind == "result" else body.get("code", kind)] = \
                    counts.get("filled" if kind == "result" else body.get("code", kind), 0) + 1
        except Exception:
            counts["stream_lost"] += 1
        finally:
            await fs.close()

    async with trio.open_nursery() as n:
        for k in range(streams):
            n.start_soon(one, k)


async def flood(net: WorkerNet, requests: int = 12, streams: int = 24) -> dict:
    """A peer floods the first worker with sessions filling its cache; an honest seeker keeps generating."""
    target = net.workers[0].info
    async with attacker(net.cn.network, net.boot, net.root) as node, net.seeker() as sk:
        await sk.wait_alive(net.ids())
        before = await anchored_trust(sk, net.cn, net.ids())
        stop = trio.Event()
        counts = {"opened": 0, "stream_refused": 0, "stream_lost": 0}
        node.nursery.start_soon(_flood_peer, node.host, target["addrs"][0], target["model"], target["start"],
                                target["end"], streams, stop, counts)
        with trio.fail_after(30):
            while counts["opened"] < 6:
                await trio.sleep(0.05)
        ok = await honest_requests(sk, requests, 8)
        stop.set()
        after = await anchored_trust(sk, net.cn, net.ids())
        blamed = sum(1 for b in sk.reports if b["outcome"] != "success")
        node.nursery.cancel_scope.cancel()
    return {"flood_honest_success_rate": ok / requests,
            "flood_honest_trust_drop": max(0.0, max(before[w] - after[w] for w in before)),
            "flood_failure_reports": blamed, "flood_attacker": counts}


# ---------------------------------------------------------------- fuzzing


def _nested(depth: int) -> bytes:
    return b"\x91" * depth + b"\x01"  # msgpack fixarray(1) x depth, then 1


def _fuzz_frames(rng: random.Random, n: int) -> list[bytes]:
    """n malformed inference frames, each length-prefixed: garbage, wrong types, unknown kinds, bad tensors,
    missing fields, oversize fields, truncated msgpack. Never an oversize length header (that ends the
    stream by design; those are sent separately)."""

    sid = os.urandom(16)
    shapes = [
        lambda: os.urandom(rng.randrange(1, 64)),
        lambda: msgpack.packb({"v": 1, "kind": rng.choice(["open", "step", "prefill", "zzz", "result"]),
                               "body": rng.choice([{}, [], 3, "x", {"session": b"short"}, None])}),
        lambda: msgpack.packb({"v": rng.choice([0, 2, "1", None]), "kind": "step", "body": {}}),
        lambda: msgpack.packb({"v": 1, "kind": "step", "body": {
            "session": sid, "pos": rng.choice([-1, 2**40, "0"]), "hidden": {"dtype": "float32", "shape": [1, 1, 64],
                                                                               "data": b"\0" * 3}}}),
        lambda: msgpack.packb({"v": 1, "kind": "prefill", "body": {
            "session": sid, "pos": 0, "hidden": {"dtype": rng.choice(["int8", "float32", "object"]),
                                                  "shape": [1, rng.randrange(-2, 3), 64], "data": b""}}}),
        lambda: msgpack.packb({"v": 1, "kind": "open", "body": {"session": sid, "model": "m" * 500, "start": 0,
                                                                "end": 2, "max_length": 1}}),
        lambda: msgpack.packb({"v": 1, "kind": "tokenize", "body": {"messages": [{"role": "god", "content": 1}]}}),
        lambda: msgpack.packb({"v": 1, "kind": "step", "body": {"session": sid, "pos": 0}})[:-3],
        lambda: b"\xc1" * rng.randrange(1, 9),  # never-used msgpack byte
        lambda: _nested(rng.randrange(30, 200)),  # deep nesting
    ]
    out = []
    for _ in range(n):
        body = shapes[rng.randrange(len(shapes))]()
        out.append(struct.pack(">I", len(body)) + body)
    return out


async def fuzz_streams(host: IHost, addr: str, cases: int, streams: int = 4, batch: int = 200) -> dict:
    """Throw `cases` malformed frames at a worker's inference streams, reading every reply."""

    pid = await dial(host, addr)
    sent = {"frames": 0, "replies": 0, "reopened": 0}
    rng = random.Random(1)
    pool = _fuzz_frames(rng, 4000)

    async def one(share: int) -> None:
        fs = FramedStream(await open_stream(host, pid, INFER, 5.0))
        done = 0
        try:
            while done < share:
                k = min(batch, share - done)
                start = rng.randrange(len(pool) - k)
                await fs.stream.write(b"".join(pool[start:start + k]))
                for _ in range(k):
                    kind, _ = await fs.read(30.0)
                    sent["replies"] += 1
                done += k
                sent["frames"] += k
        finally:
            await fs.close()

    async with trio.open_nursery() as n:
        for _k in range(streams):
            n.start_soon(one, cases // streams)
    # oversize length headers end a stream each (by design): a few, on fresh streams
    for _ in range(20):
        fs = FramedStream(await open_stream(host, pid, INFER, 5.0))
        await fs.stream.write(struct.pack(">I", 1 << 31) + b"x" * 16)
        try:
            await fs.read(5.0)
        except Exception:
            pass
        await fs.close()
        sent["frames"] += 1
        sent["reopened"] += 1
    return sent


async def fuzz_gossip(node: Node, cases: int) -> int:
    """Malformed envelopes published on every topic (the pubsub layer signs them: they reach the handlers)."""
    rng = random.Random(2)

    topics = ("heartbeats", "reports", "ledger")
    for i in range(cases):
        choice = i % 4
        if choice == 0:
            data = os.urandom(rng.randrange(1, 256))
        elif choice == 1:
            data = msgpack.packb({"v": 1, "kind": "heartbeat", "from": os.urandom(32), "seq": i, "ts": time.time(),
                                  "body": {"network": "x"}, "sig": os.urandom(64)})
        elif choice == 2:
            data = msgpack.packb({"v": 1, "kind": "ledger_delta", "from": os.urandom(32), "seq": i,
                                  "ts": time.time(), "body": {"network": "attack-workers", "reports": [b"x"]},
                                  "sig": os.urandom(64)})
        else:
            data = msgpack.packb({"v": 1, "kind": "trust_report", "from": os.urandom(32), "seq": -i,
                                  "ts": "now", "body": [], "sig": b""})
        await node.gossip.publish(topics[i % 3], data)
        if i % 20 == 0:  # ~400/s: py-libp2p's subscription queues drop (uncounted) what floods them faster
            await trio.sleep(0.05)
    return cases


def _gossip_counts(net: WorkerNet) -> tuple[int, int, dict]:
    """(gossip messages received, envelopes accepted, drops by reason) summed over every daemon."""
    received, accepted, dropped = 0, 0, {}
    names = list(net.cn.procs) + [w.info["name"] for w in net.workers]
    for name in names:
        st = net.cn.status(name) or {}
        received += sum((st.get("gossip") or {}).get("received", {}).values())
        accepted += st.get("accepted", 0)
        for k, v in (st.get("dropped") or {}).items():
            dropped[k] = dropped.get(k, 0) + v
    return received, accepted, dropped


async def fuzz(net: WorkerNet, stream_cases: int = 1_000_000, gossip_cases: int = 20_000) -> dict:
    """Malformed frames at the workers' inference streams and malformed envelopes on every gossip topic;
    every one must be answered or dropped with a counted reason, and every daemon must keep serving."""
    t0 = time.perf_counter()
    await trio.sleep(1.5)  # status files are written every second
    g_recv0, g_acc0, g_drop0 = _gossip_counts(net)
    w0 = {w.info["name"]: net.cn.status(w.info["name"]) or {} for w in net.workers}
    async with attacker(net.cn.network, net.boot, net.root) as node:
        for a in net.cn.anchor_addrs.values():
            await node.links.connect(a.rsplit("/p2p/", 1)[1])
        with trio.fail_after(30):  # publish into a formed mesh, not into the void
            while not all(node.gossip.peers(t) for t in ("heartbeats", "reports", "ledger")):
                await trio.sleep(0.1)
        sent = {"frames": 0, "replies": 0, "reopened": 0}
        for w in net.workers:
            got = await fuzz_streams(node.host, w.info["addrs"][0], stream_cases // len(net.workers))
            for k in sent:
                sent[k] += got[k]
        g = await fuzz_gossip(node, gossip_cases)
        await trio.sleep(3.0)  # let the gossip drain
    await trio.sleep(1.5)
    g_recv1, g_acc1, g_drop1 = _gossip_counts(net)
    counted, internal = 0, 0
    by_reason: dict[str, int] = {}
    for w in net.workers:
        before, after = w0[w.info["name"]], net.cn.status(w.info["name"]) or {}
        c0, c1 = before.get("counters", {}), after.get("counters", {})
        internal += c1.get("internal", 0) - c0.get("internal", 0)
        r0, r1 = before.get("refusals", {}), after.get("refusals", {})
        for k, v in r1.items():
            if v - r0.get(k, 0):
                by_reason[k] = by_reason.get(k, 0) + v - r0.get(k, 0)
        counted += sum(r1.values()) - sum(r0.values())
    gossip_dropped = {k: v - g_drop0.get(k, 0) for k, v in g_drop1.items() if v - g_drop0.get(k, 0)}
    async with net.seeker() as sk:  # still serving?
        await sk.wait_alive(net.ids())
        r = await sk.request(PROMPTS[0], 6)
    crashes = sum(1 for w in net.workers if w.proc.poll() is not None) + sum(
        1 for p in net.cn.procs.values() if p.proc.poll() is not None) + internal
    return {"fuzz_cases": sent["frames"] + g, "fuzz_stream_frames": sent["frames"],
            "fuzz_stream_answered_by_reason": by_reason, "fuzz_stream_unanswered": sent["frames"] - counted,
            "fuzz_gossip_envelopes": g, "fuzz_gossip_deliveries": g_recv1 - g_recv0,
            "fuzz_gossip_dropped_by_reason": gossip_dropped,
            # every delivery is an accepted envelope (the workers' own heartbeats meanwhile) or a counted drop
            "fuzz_gossip_unaccounted": (g_recv1 - g_recv0) - (g_acc1 - g_acc0) - sum(gossip_dropped.values()),
            "fuzz_crashes": crashes,
            "fuzz_service_ok_after": r["ok"], "fuzz_s": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------- network 2: the lab (byzantine)


async def byzantine(net: LabNet, max_requests: int = 60, rate: float = 0.25, tokens: int = 16,
                    trials: int = 5) -> dict:
    """Requests until a spot check catches the byzantine peer, in `trials` independent trials (each from a
    fresh anchor-signed ledger epoch with the plan's trust0 priors, after one measured request through each
    replica of its span: the liar looks trusted and is fastest, so G-TRAC routes through it)."""

    peers = net.lab.peers
    byz = peers["byz"]
    operator = Keystore(net.lab.keystore).load("anchor-1")
    to_detect, routed, exact, total, trust_after, avoided = [], 0, 0, 0, [], 0
    async with net.seeker() as sk:
        await sk.wait_alive(peers.values())
        # the plan's priors first: a fresh seeker offers unproven workers to routing a few at a time
        # (PeerView.candidates), so without them the reference could find no chain the plan has
        await new_epoch(sk.node, sk.cache, operator, net.lab, sk.s.network)
        ref = await sk.request(PROMPTS[0], tokens, exclude=[byz])  # what honest workers compute
        for _ in range(trials):
            await new_epoch(sk.node, sk.cache, operator, net.lab, sk.s.network)
            for w in sk.view.workers.values():  # the seeker's own estimates restart too
                w.trust, w.latency_ms = None, None
            span = [peers[p] for p in ("byz", "h1", "h2")]
            for p in span:  # the seeker has measured every replica once (a busy ledger's latencies would tell)
                await sk.request(PROMPTS[2], 4, exclude=[q for q in span if q != p])
            detected = None
            for i in range(max_requests):
                r = await sk.request(PROMPTS[0], tokens, rate=rate)
                routed += byz in r.get("routed", [])
                if r["ok"]:
                    total += 1
                    exact += r["tokens"] == ref["tokens"]
                if any(w["chain"][0] == byz for w in r["wrong_outputs"]):
                    detected = i + 1  # requests issued until a check caught it (as a hop or as a witness)
                    break
            to_detect.append(detected)
            await settle(sk)
            trust_after.append(ledger_trust(net.lab.cn, "anchor-1").get(byz))
            r = await sk.request(PROMPTS[1], 4)  # the liar is now below the floor: routing leaves it out
            avoided += byz not in r["chain"]
    worst = None if None in to_detect else max(to_detect)
    return {"byzantine_requests_to_detect": worst, "byzantine_detect_trials": to_detect,
            "byzantine_routed_through": routed, "byzantine_lie_rate": 0.3, "spot_check_rate": rate,
            "byzantine_trust_after": max(t for t in trust_after if t is not None) if any(trust_after) else None,
            "byzantine_avoided_after": avoided / trials, "byzantine_exact_outputs": f"{exact}/{total}"}


async def first_use(net: LabNet, tokens: int = 16) -> dict:
    """Spot checks' probation: a liar this seeker has not verified yet is checked on every call of its first
    turn, so it is caught on its first use and not one wrong token reaches the user."""
    peers = net.lab.peers
    byz = peers["byz"]
    operator = Keystore(net.lab.keystore).load("anchor-1")
    async with net.seeker() as sk:
        await sk.wait_alive(peers.values())
        # the plan's priors first: a fresh seeker offers unproven workers to routing a few at a time
        # (PeerView.candidates), so without them the reference could find no chain the plan has
        await new_epoch(sk.node, sk.cache, operator, net.lab, sk.s.network)
        ref = await sk.request(PROMPTS[0], tokens, exclude=[byz])
        await new_epoch(sk.node, sk.cache, operator, net.lab, sk.s.network)
        for w in sk.view.workers.values():
            w.trust, w.latency_ms = None, None
        sk.view.verified.clear()
        span = [peers[p] for p in ("byz", "h1", "h2")]
        for p in span:  # measured once each, unchecked: G-TRAC now prefers the fast liar
            await sk.request(PROMPTS[2], 4, exclude=[q for q in span if q != p])
        # one measurement each is noisy on a loaded machine (the liar's lead is ~4 ms a call): the honest
        # replicas look busy while the chain is chosen, so the liar gets the span as a fast attacker would; they
        # are there again as its witnesses
        r = await sk.request(PROMPTS[0], tokens, rate=0.25, probation=1, hold=span[1:])
    return {"probation_routed_through": byz in r.get("routed", []),
            "probation_caught_on_first_use": any(w["chain"][0] == byz for w in r["wrong_outputs"]),
            "probation_tokens_exact": r["ok"] and r["tokens"] == ref["tokens"],
            "probation_calls_checked": r["checks"]["calls"]}


async def accusations(net: LabNet, min_checked: int = 1000, tokens: int = 24) -> dict:
    """An honest network, every hop checked on every call: how many honest workers get accused?"""
    byz = net.lab.peers["byz"]
    checked = wrong = mismatches = requests = 0
    async with net.seeker() as sk:
        await sk.wait_alive(net.lab.peers.values())
        while checked < min_checked:
            r = await sk.request(PROMPTS[requests % len(PROMPTS)], tokens, rate=1.0, calls=10**6, exclude=[byz])
            requests += 1
            checked += r["checks"]["calls"]
            mismatches += r["checks"]["mismatches"]
            wrong += len(r["wrong_outputs"])
            if requests > 4 * min_checked:
                break
    return {"false_accusations": wrong, "checked_hops": checked, "check_mismatches": mismatches,
            "accusation_requests": requests}


async def spot_cost(net: WorkerNet, rounds: int = 8, tokens: int = 32, rate: float = 0.25) -> dict:
    """Decode tok/s with spot checks at `rate` against none, interleaved A/B on the same network and run."""
    tps: dict[float, list[float]] = {0.0: [], rate: []}
    checked = 0
    async with net.seeker() as sk:
        await sk.wait_alive(net.ids())
        for i in range(rounds):
            for r_ in ((0.0, rate) if i % 2 == 0 else (rate, 0.0)):
                r = await sk.request(PROMPTS[i % len(PROMPTS)], tokens, rate=r_)
                checked += r["checks"]["calls"]
                if r["ok"] and r.get("step_ms"):
                    tps[r_].append(len(r["step_ms"]) / (sum(r["step_ms"]) / 1e3))
    base, with_checks = sum(tps[0.0]) / len(tps[0.0]), sum(tps[rate]) / len(tps[rate])
    return {"tok_s_no_checks": round(base, 2), "tok_s_checks": round(with_checks, 2),
            "spot_check_cost": round(max(0.0, 1.0 - with_checks / base), 4), "spot_check_cost_rate": rate,
            "spot_check_cost_checked_calls": checked, "spot_check_cost_model": net.model}


# ---------------------------------------------------------------- network 3: the ledger (sybils)


async def sybils(net: LedgerNet, honest: int = 3, sybil_count: int = 20, each: int = 10) -> dict:
    """3 established reporters see W succeed and the honey pot H fail; then 20 fresh identities slander W and
    vote for H. Trust as the anchors derive it, polled throughout."""

    cn = net.cn
    fleet = cn.procs["fleet"].info["identities"]
    w, h = fleet[0], fleet[1]
    age = LedgerNet.RULES["standing_age_s"]
    async with attacker(cn.network, list(cn.anchor_addrs.values()), cn.root) as node:
        anchor = next(iter(cn.anchor_addrs.values())).rsplit("/p2p/", 1)[1]
        lp = await node.links.connect(anchor)
        honest_signers = [Signer(Identity.generate()) for _ in range(honest)]
        rules = LedgerNet.RULES
        t_end = time.time() + age + rules["reporter_window_s"] * (rules["standing_reports"] + 2) + 2.0
        while time.time() < t_end:  # established: old enough, corroborated by each other
            raws = [signed_report(s, cn.network, [w], "success") for s in honest_signers]
            raws += [signed_report(s, cn.network, [h], "failure") for s in honest_signers]
            await submit(node.host, lp, cn.network, raws)
            await trio.sleep(0.5)
        await trio.sleep(2.0)
        net.honest = honest_signers  # established: the other ledger scenarios (benchmarks/trust2.py) use them
        t0 = ledger_trust(cn, "a1")
        sybil_signers = [Signer(Identity.generate()) for _ in range(sybil_count)]
        low, high = t0.get(w, 1.0), t0.get(h, 0.0)
        for _k in range(each):
            raws = [signed_report(s, cn.network, [w], "failure") for s in sybil_signers]
            raws += [signed_report(s, cn.network, [h], "success") for s in sybil_signers]
            for i in range(0, len(raws), 200):
                await submit(node.host, lp, cn.network, raws[i:i + 200])
            await trio.sleep(0.3)
            tr = ledger_trust(cn, "a1")
            low, high = min(low, tr.get(w, 1.0)), max(high, tr.get(h, 0.0))
        await trio.sleep(3.0)  # anchors sync within sync_s; on a loaded machine give them up to 30 s more
        with trio.move_on_after(30.0):
            while True:
                final = {n: ledger_trust(cn, n) for n in ("a1", "a2", "a3")}
                for tr in final.values():
                    low, high = min(low, tr.get(w, 1.0)), max(high, tr.get(h, 0.0))
                same = len({json.dumps(t, sort_keys=True) for t in final.values()}) == 1
                if same:
                    break
                await trio.sleep(0.5)
    return {"slander_honest_min_trust": round(low, 4), "ballot_stuffing_honeypot_max_trust": round(high, 4),
            "sybil_reporters": sybil_count, "established_reporters": honest,
            "honest_trust_before_attack": round(t0.get(w, 1.0), 4), "honeypot_trust_before_attack":
                round(t0.get(h, 0.0), 4), "replicas_identical_after": same}


# ---------------------------------------------------------------- the comparison's tolerance


def tolerance(model: str = "smollm2-135m", start: int = 10, end: int = 20) -> dict:
    """The gaps the spot-check tolerance (spotcheck.RTOL) sits between, measured on real layers (engine side:
    gtracd/engine/gaps.py)."""
    from ..engine.gaps import output_gaps

    return {"tolerance_rtol": RTOL, **output_gaps(resolve_model(model, log=say), start, end),
            "tolerance_model_layers": f"{model} {start}:{end}"}


# ---------------------------------------------------------------- the bench

# name -> (network, what it shows, the scenario at full size given the network and --scale)
SCENARIOS = {
    "spoof": ("workers", "spoofed identity", lambda n, x: spoof(n)),
    "hijack": ("workers", "model hijack", lambda n, x: hijack(n)),
    "flood": ("workers", "session flood", lambda n, x: flood(n)),
    "fuzz": ("workers", "fuzzing live daemons", lambda n, x: fuzz(n, int(1_000_000 * x), int(20_000 * x))),
    "byzantine": ("lab", "byzantine worker", lambda n, x: byzantine(n)),
    "accusations": ("lab", "false accusations (honest network, every hop checked)",
                    lambda n, x: accusations(n, max(50, int(1000 * x)))),
    "cost": ("cost", "cost of spot checks (SmolLM2, 3 hops, 2 replicas each)", lambda n, x: spot_cost(n)),
    "sybil": ("ledger", "sybil slander and ballot stuffing", lambda n, x: sybils(n)),
    # issue 23 (Trust II): benchmarks/trust2.py
    "forgery": ("trust2", "a last hop's own text, a first hop's forged model card", lambda n, x: trust2.forgery(n)),
    "self_excused": ("trust2", "stalls that end in an excuse", lambda n, x: trust2.self_excused(n)),
    "sybil_witness": ("trust2", "sybil hosts as witnesses and arbiters",
                      lambda n, x: trust2.sybil_witness(n, max(6, int(20 * x)))),
    "evasion": ("trust2", "liars that evade spot checks (timing, odd range)",
                lambda n, x: trust2.evasion(n, max(10, int(50 * x)))),
    "identity_flood": ("trust2", "20,000 fake heartbeat identities against route selection",
                       lambda n, x: trust2.identity_flood(n, max(2000, int(20_000 * x)))),
    "induced_timeout": ("cost", "3,000-token prefills from a fresh key against honest decode steps",
                        lambda n, x: trust2.induced_timeout(n)),
    "latency_poisoning": ("ledger", "fresh keys set a worker's latency", lambda n, x: trust2.latency_poisoning(n)),
    "newcomer": ("ledger", "fresh keys push a new worker below the floor", lambda n, x: trust2.newcomer(n)),
    "cheap_standing": ("ledger", "standing by backdating and echoing", lambda n, x: trust2.cheap_standing(n)),
    "pending_flood": ("ledger", "a pending-set flood against an anchor's loop and honest reports",
                      lambda n, x: trust2.pending_flood(n, reports=max(2000, int(10_000 * x)))),
    "sync_abuse": ("ledger", "full-diff requests from anyone", lambda n, x: trust2.sync_abuse(n, max(15.0, 60.0 * x))),
    "tolerance": (None, "the spot-check tolerance against measured honest and lying gaps", None),
}


async def _run_async(nets: dict, scale: float, only: set[str]) -> dict:
    out: dict = {}
    for name, (kind, what, scenario) in SCENARIOS.items():
        if name in only and kind is not None:
            say(what)
            out.update(await scenario(nets[kind], scale))
    return out


def run(scale: float = 1.0, only: str = "", as_json: bool = False) -> dict:
    want = set(only.split(",")) if only else set(SCENARIOS)
    unknown = want - set(SCENARIOS)
    if unknown:
        raise UserError(f"unknown scenario(s) {sorted(unknown)}: {', '.join(SCENARIOS)}")
    root = Path(tempfile.mkdtemp(prefix="gtracd-attack-"))
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    setup_logging("ERROR")  # the attacks' expected warnings (repairs, refusals) are counted in the figures
    kinds = {SCENARIOS[w][0] for w in want}
    t0 = time.time()
    if "tolerance" in want:
        say(SCENARIOS["tolerance"][1])
        tol = tolerance()
    nets: dict = {}
    try:
        if "workers" in kinds:
            nets["workers"] = WorkerNet(root)
        if "lab" in kinds:
            nets["lab"] = LabNet(root)
        if "ledger" in kinds:
            nets["ledger"] = LedgerNet(root)
        if "cost" in kinds:
            nets["cost"] = cost_net(root)
        if "trust2" in kinds:
            nets["trust2"] = trust2.trust2_net(root)
        for n in nets.values():
            n.start()
        res = trio.run(_run_async, nets, scale, want)
        if "tolerance" in want:
            res.update(tol)
        res["daemons_alive_at_end"] = all(n.alive() for n in nets.values())
    finally:
        rcs = [rc for n in nets.values() for rc in n.stop()]
        shutil.rmtree(root, ignore_errors=True)
    res["exit_codes_clean"] = all(rc == 0 for rc in rcs)
    res["bench_s"] = round(time.time() - t0, 1)
    res["goals"] = {**GOALS, **trust2.GOALS}
    if not as_json:
        for k, v in res.items():
            if k != "goals":
                print(f"{k:40s} {v}")
    print(json.dumps(res))
    return res


def main(args: argparse.Namespace) -> int:
    """`gtracd bench attack`."""
    run(args.scale, args.only, args.json)
    return 0
