"""The spot-check driver of one generation (trio shell around seeker/spotcheck.py).

At the start of a request each hop is checked with probability `rate` (drawn from an rng no worker can
predict). A checked hop's first `calls` calls also go, with the same frame body and at the same time, to a
witness: a replica of the same layer range with trust above the floor, on another host, not in the chain.
On a mismatch an arbiter (a third such replica) is replayed the hop's earlier inputs and given the same
call. If the hop lied, the witness (whose cache is identical) takes its place in the chain and the request
goes on with the witness's output, so the finished text is what honest workers compute.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

import trio

from ..net.hop import HopError, HopFailed
from ..routing import replacement
from .spotcheck import arbitrate, evidence, input_digest, same_output

log = logging.getLogger("gtracd.seeker")


@dataclass
class Check:
    calls_left: int
    witness: object = None  # a generation.Hop on the witness replica, opened at the first checked call
    host: str = ""


@dataclass
class SpotChecker:
    rate: float = 0.0
    calls: int = 4
    sid: bytes = b""  # the generation's session id (every hop and witness uses it)
    rng: random.Random = field(default_factory=random.SystemRandom)
    checks: dict[int, Check] = field(default_factory=dict)
    wrong_outputs: list[dict] = field(default_factory=list)  # {"chain": [accused, witness, arbiter], "evidence"}
    counters: dict[str, int] = field(default_factory=lambda: {"hops": 0, "calls": 0, "mismatches": 0,
                                                               "inconclusive": 0, "no_replica": 0, "aborted": 0})

    def plan(self, hops: int) -> None:
        self.checks = {i: Check(self.calls) for i in range(hops) if self.rate > 0 and self.rng.random() < self.rate}
        self.counters["hops"] += len(self.checks)

    def active(self, i: int) -> Check | None:
        c = self.checks.get(i)
        return c if c is not None and c.calls_left > 0 else None

    async def drop(self, i: int) -> None:
        """Stop checking hop i (repaired, done, or the witness failed); close the witness session."""
        c = self.checks.pop(i, None)
        if c is not None and c.witness is not None:
            await c.witness.session.close(self.sid)

    async def close(self) -> None:
        for i in list(self.checks):
            await self.drop(i)


def _host(addr: str) -> str:
    return addr.rsplit("/p2p/", 1)[-1]


async def side_hop(gen, i: int, exclude: set[str]):
    """A session on another replica of hop i's range (trust >= floor, another host, not in the chain), or
    None when none is known or it cannot be opened."""
    from .generation import Hop

    hop = gen.hops[i]
    host = _host(hop.peer.addr)
    same_host = {w.peer_id for w in gen.view.workers.values() if _host(w.addr) == host}
    snap = gen.view.snapshot(gen.model)
    me = snap.by_id.get(hop.peer.peer_id)
    if me is None:
        return None
    rep = replacement(snap, me, gen.params, exclude=gen.failed | set(gen.chain) | same_host | exclude)
    if rep is None:
        return None
    try:
        hs = await gen.net.session(rep.id, gen.open_timeout)
        side = Hop(gen.view.workers[rep.id], hs)
        await hs.open(gen._open_body(side.peer), gen.open_timeout)
    except (HopFailed, HopError) as e:
        log.info("spot check: replica %s unavailable (%s)", rep.id[-8:], e)
        return None
    return side


async def checked_call(gen, i: int, kind: str, chunk, extra: dict) -> tuple[dict, float]:
    """Hop i's call, mirrored on its witness and compared; raises HopFailed/HopError for the hop's own failure
    (the caller repairs as usual). Returns (result, ms) of whichever replica now holds hop i."""
    sc: SpotChecker = gen.checker
    chk = sc.checks[i]
    hop = gen.hops[i]
    body = chunk.body(gen.sid, **extra)
    if chk.witness is None:
        chk.witness = await side_hop(gen, i, set())
        if chk.witness is None:
            sc.counters["no_replica"] += 1
            await sc.drop(i)
            return await hop.session.timed(kind, body, gen.deadline(hop, chunk.n))
    wit = chk.witness
    out: dict = {}

    async def run(name, h):
        try:
            out[name] = await h.session.timed(kind, body, gen.deadline(h, chunk.n))
        except (HopFailed, HopError) as e:
            out[name] = e

    async with trio.open_nursery() as n:
        n.start_soon(run, "hop", hop)
        n.start_soon(run, "witness", wit)
    if isinstance(out["hop"], Exception):
        await sc.drop(i)
        raise out["hop"]
    if isinstance(out["witness"], Exception):  # the witness failed: no verdict on the hop, and no blame
        sc.counters["aborted"] += 1
        await sc.drop(i)
        return out["hop"]
    (res, ms), (wres, wms) = out["hop"], out["witness"]
    sc.counters["calls"] += 1
    if same_output(res, wres):
        wit.history.append(chunk)
        chk.calls_left -= 1
        if chk.calls_left == 0:
            await sc.drop(i)
        return res, ms
    sc.counters["mismatches"] += 1
    arb = await side_hop(gen, i, {wit.peer.peer_id})
    ares = None
    if arb is not None:
        try:
            for ch in hop.history:  # the inputs both got before this call
                await arb.session.timed("prefill", ch.body(gen.sid, sample=False), gen.deadline(arb, ch.n))
            ares, _ = await arb.session.timed(kind, body, gen.deadline(arb, chunk.n))
        except (HopFailed, HopError) as e:
            log.info("spot check: arbiter %s failed (%s)", arb.peer.peer_id[-8:], e)
        await arb.session.close(gen.sid)
    verdict = arbitrate(res, wres, ares)
    inp = input_digest(chunk)
    if verdict.liar == "hop":
        ev = evidence(inp, res, wres, ares)
        sc.wrong_outputs.append({"chain": [hop.peer.peer_id, wit.peer.peer_id, arb.peer.peer_id], "evidence": ev})
        log.warning("spot check: hop %d %s returned wrong output (witness %s, arbiter %s agree); replaced",
                    i, hop.peer.peer_id[-8:], wit.peer.peer_id[-8:], arb.peer.peer_id[-8:])
        gen.failed.add(hop.peer.peer_id)
        await hop.session.abort()
        wit.history = list(hop.history)  # the caller appends this chunk
        sc.checks.pop(i, None)  # the witness becomes the hop: not closed
        gen.hops[i] = wit
        return wres, wms
    if verdict.liar == "witness":
        ev = evidence(inp, wres, res, ares)
        sc.wrong_outputs.append({"chain": [wit.peer.peer_id, hop.peer.peer_id, arb.peer.peer_id], "evidence": ev})
        log.warning("spot check: witness %s returned wrong output for hop %d", wit.peer.peer_id[-8:], i)
        gen.failed.add(wit.peer.peer_id)
    else:
        sc.counters["inconclusive"] += 1
        log.warning("spot check: hop %d %s and witness %s disagree, arbiter %s: inconclusive", i,
                    hop.peer.peer_id[-8:], wit.peer.peer_id[-8:], "agrees with neither" if arb else "none known")
    await sc.drop(i)
    return res, ms
