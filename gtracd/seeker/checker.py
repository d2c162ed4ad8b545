"""The spot-check driver of one generation (trio shell around seeker/spotcheck.py).

At the start of every turn each hop is checked with probability `rate` (drawn from an rng no worker can
predict), over a window of `calls` consecutive calls that starts at a random call of the turn, so a worker
cannot count its way past the checks; a hop replaced by repair is drawn again. A hop whose peer this seeker
has not yet verified is on *probation*: it is checked on every call of the turn, until it has computed
`probation` whole turns that matched (a liar that lies from the start is caught on its first use, before a
single wrong token reaches the user; one that behaves first and lies later meets the random checks). When the window opens, a
*witness* is opened — a replica of the same range above the floor, outside the chain, on another host — and
replayed the hop's inputs so far; then each call of the window goes, identical and concurrently, to both.
On a mismatch an *arbiter* (a third such replica, on a host different from both) is replayed the same
inputs and given the call. If the hop lied, the witness (same cache) takes its place in the chain and the
request goes on with the witness's output. If no arbiter settles it (none known, or it agrees with neither),
neither output goes on: the hop is repaired onto another replica like a failed hop, nobody is blamed, and the
witness is not used again in the request — unless the witness sits below the trust floor (a probation check's
last resort when no replica above it can witness): its word alone never costs a trusted hop its place. A
probation check whose witness fails mid-turn goes on with another witness; a replica that cannot be opened is
passed over for another (up to WITNESS_TRIES).

A hop whose range no other replica serves exactly (0:20 among 0:10s and 10:20s, any odd split) is witnessed
by a *sub-chain* covering its layers, each member on another host: a call goes through its members in turn,
and its output must equal the hop's. A hop convicted this way cannot be swapped for its witness (one hop is
not a chain): the request ends there, not blamed on anyone but the liar's conviction, and the next request
routes around it.

Witnesses and arbiters are drawn per *host*, not per identity (a host announcing fifty identities is one
draw), at random among the hosts (a predictable pick is one an attacker can occupy). An arbiter, whose word
convicts, must have standing of its own: trust earned above the initial trust (completed requests, or a
witness's matching check, seen by this seeker or the ledger). A witness is drawn from hosts with standing when
there are any, else from the rest; a witness that matched a whole window earns this seeker's credit. So free
identities can neither witness a conviction nor arbitrate one.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from dataclasses import dataclass, field

import trio

from ..net.hop import HopError, HopFailed
from .hops import Chunk, Hop, host_of, replay_plan
from .spotcheck import arbitrate, evidence, input_digest, same_output

log = logging.getLogger("gtracd.seeker")


class Convicted(Exception):
    """Hop `index` (`peer`) was convicted by a sub-chain witness: it cannot be swapped for it, the request ends
    (the conviction is what the seeker reports)."""

    def __init__(self, peer: str, index: int):
        self.peer, self.index = peer, index
        super().__init__(f"hop {index} ({peer[-8:]}) returned wrong output")


@dataclass
class Check:
    calls_left: int
    start_at: int = 0  # tokens of this turn generated before the window opens (or calls: SpotChecker.due)
    seen: int = 0
    witness: object = None  # a generation.Hop on the witness replica, opened when the window opens
    peer: str = ""  # the hop's peer when the check was drawn
    full: bool = False  # probation: every call of the turn
    matched: int = 0  # calls compared and found equal


@dataclass
class SpotChecker:
    rate: float = 0.0
    calls: int = 4
    sid: bytes = b""  # the generation's session id (every hop and witness uses it)
    rng: random.Random = field(default_factory=random.SystemRandom)
    checks: dict[int, Check] = field(default_factory=dict)
    horizon: int = 1  # forward calls expected this turn
    counters: dict[str, int] = field(default_factory=lambda: {"hops": 0, "calls": 0, "mismatches": 0,
                                                               "inconclusive": 0, "no_replica": 0, "aborted": 0,
                                                               "probation": 0})
    probation: int = 0  # whole turns a peer is checked call by call before only the rate applies (0: never)
    verified: object = None  # callable(peer) -> True once the peer passed its probation with this seeker

    def _draw(self, i: int, peer: str) -> None:
        if self.rate <= 0:
            return
        if self.probation and self.verified is not None and not self.verified(peer):
            # every call of the turn (a turn has at most horizon forward calls; prefill parts are one call)
            self.checks[i] = Check(self.horizon + 1, 0, peer=peer, full=True)
            self.counters["hops"] += 1
            self.counters["probation"] += 1
        elif self.rng.random() < self.rate:
            self.checks[i] = Check(self.calls, self.rng.randrange(max(1, self.horizon - self.calls + 1)), peer=peer)
            self.counters["hops"] += 1

    async def plan(self, peers: list[str], horizon: int) -> None:
        """A new turn of up to `horizon` tokens (at most that many forward calls) through `peers` (the chain, in
        order): draw which hops are checked and at which token their window opens."""
        await self.close()
        self.horizon = max(1, horizon)
        for i, peer in enumerate(peers):
            self._draw(i, peer)

    async def redraw(self, i: int, peer: str) -> None:
        """Hop i was replaced by `peer`: the replacement is drawn like any hop."""
        await self.drop(i)
        self._draw(i, peer)

    async def end_turn(self) -> list[tuple[str, str]]:
        """The turn ended as planned: (hop peer, witness peer) of every probation check that compared every call
        of the turn and found them equal (the hop passed a turn of its probation, the witness earned credit);
        every witness session is closed."""
        passed = [(c.peer, c.witness.peer.peer_id) for c in self.checks.values()
                  if c.full and c.matched and c.witness is not None and c.matched == c.seen]
        await self.close()
        return passed

    def due(self, i: int, at: int | None = None) -> bool:
        """Count one call of hop i; True when it falls in the hop's open check window. `at`: the tokens this
        turn generated before the call (the window opens at a token position: a speculative trip yields several
        tokens, so counting calls would let a turn end before its window opened); None: count calls."""
        c = self.checks.get(i)
        if c is None or c.calls_left <= 0:
            return False
        c.seen += 1
        return (at if at is not None else c.seen - 1) >= c.start_at

    async def drop(self, i: int) -> None:
        """Stop checking hop i (repaired, done, or the witness failed); close the witness session."""
        c = self.checks.pop(i, None)
        if c is not None and c.witness is not None:
            await c.witness.session.close(self.sid)

    async def close(self) -> None:
        for i in list(self.checks):
            await self.drop(i)



def cut_history(history: list[Chunk], pos: int) -> list[Chunk]:
    """The inputs of a session before position `pos` (what it keeps after a crop there)."""
    return [c for c in (ch.cut(pos) for ch in history) if c is not None]


def has_standing(gen, pid: str) -> bool:
    """Trust earned above the initial trust (a success credited by this seeker or the ledger)."""
    return gen.view.trust(pid) >= gen.view.initial_trust + gen.view.reward / 2


async def side_hop(gen, i: int, avoid: list, standing: str = "prefer") -> object | None:
    """A session on another replica of hop i's range, replayed the hop's inputs so far: trust >= floor,
    alive, not busy, not in the chain, not failed, on none of the hosts of the hop and of `avoid` (Hops). A host
    is drawn at random, then one of its identities. `standing`: "require" (only replicas with standing),
    "prefer" (those if any, else any above the floor), "any" (as prefer, and if none is above the floor, one
    below it: a witness only detects — its word convicts nobody without an arbiter, who needs standing).
    Replicas with standing are tried first; up to WITNESS_TRIES that cannot be opened (gone since their last
    heartbeat) are passed over. None when none is known or none could be opened."""

    hop = gen.hops[i]
    others = [m for h in avoid for m in members_of(h)]
    hosts = {host_of(h.peer.addr) for h in [hop, *others]}
    snap = gen.view.snapshot(gen.model)
    me = snap.by_id.get(hop.peer.peer_id)
    if me is None:
        return None
    skip = gen.failed | set(gen.chain) | gen.view.busy(time.monotonic()) | {h.peer.peer_id for h in others} | \
        gen.banned()
    same = [p for p in snap.peers if (p.start, p.end) == (me.start, me.end) and p.alive and p.id not in skip
            and p.id in gen.view.workers and host_of(gen.view.workers[p.id].addr) not in hosts]
    cands = [p for p in same if p.trust >= gen.params.trust_floor]
    if not cands and standing == "any":  # a probation witness: below the floor rather than no check at all
        cands = same
    earned = [p for p in cands if has_standing(gen, p.id)]
    tiers = [earned] if standing == "require" else [earned, [p for p in cands if p not in earned]]
    tiers = [t for t in tiers if t]
    if not tiers:  # no exact replica: a sub-chain covering the range, if any
        return await _subchain(gen, i, hosts, skip, standing)
    rng = gen.checker.rng
    tries = 0
    for tier in tiers:  # replicas with standing first
        by_host: dict[str, list] = {}
        for p in tier:
            by_host.setdefault(host_of(gen.view.workers[p.id].addr), []).append(p)
        while by_host and tries < WITNESS_TRIES:  # one gone since its last heartbeat does not end the check
            tries += 1
            host = rng.choice(sorted(by_host))
            rep = rng.choice(sorted(by_host[host], key=lambda p: p.id))
            try:
                return await gen.open_replayed(rep.id, hop.history)
            except (HopFailed, HopError) as e:
                log.info("spot check: replica %s unavailable (%s)", rep.id[-8:], e)
                if isinstance(e, HopFailed):
                    gen.view.unreachable(rep.id)
                by_host[host].remove(rep)
                if not by_host[host]:
                    del by_host[host]
    return None


WITNESS_TRIES = 3  # replicas a witness or arbiter draw tries before the check goes without


MAX_COVERS = 64  # sub-chains enumerated before one is drawn


def covers(peers: list, start: int, end: int, host_of) -> list[list]:
    """Sub-chains of `peers` that tile [start, end) exactly with at least two members, each on its own host
    (at most MAX_COVERS of them, shortest first)."""
    by_start: dict[int, list] = {}
    for p in peers:
        if start <= p.start < p.end <= end and (p.start, p.end) != (start, end):
            by_start.setdefault(p.start, []).append(p)
    out: list[list] = []

    def walk(pos: int, path: list, hosts: set) -> None:
        if len(out) >= MAX_COVERS:
            return
        if pos == end:
            out.append(list(path))
            return
        for p in sorted(by_start.get(pos, ()), key=lambda p: (-p.end, p.id)):
            h = host_of(p.id)
            if h not in hosts:
                path.append(p)
                walk(p.end, path, hosts | {h})
                path.pop()

    walk(start, [], set())
    return sorted(out, key=len)


async def _subchain(gen, i: int, hosts: set, skip: set, standing: str):
    hop = gen.hops[i]
    snap = gen.view.snapshot(gen.model)
    usable = [p for p in snap.peers if p.alive and p.id not in skip and p.id in gen.view.workers
              and host_of(gen.view.workers[p.id].addr) not in hosts]
    ok = [p for p in usable if p.trust >= gen.params.trust_floor]
    found = covers(ok, hop.peer.start, hop.peer.end, lambda pid: host_of(gen.view.workers[pid].addr))
    if not found and standing == "any":  # a probation witness: below the floor rather than no check at all
        found = covers(usable, hop.peer.start, hop.peer.end, lambda pid: host_of(gen.view.workers[pid].addr))
    earned = [c for c in found if all(has_standing(gen, p.id) for p in c)]
    found = earned if (earned or standing == "require") else found
    if not found:
        return None
    pick = gen.checker.rng.choice(found)
    try:
        return await open_subchain(gen, [p.id for p in pick], hop.history)
    except (HopFailed, HopError) as e:
        log.info("spot check: sub-chain %s unavailable (%s)", [p.id[-8:] for p in pick], e)
        return None


class ChainSession:
    """A sub-chain's members as one session: a call goes through each in turn, hidden states relayed, and
    each member's inputs are kept in its history."""

    def __init__(self, gen, members: list[Hop]):
        self.gen, self.members = gen, members

    async def timed(self, kind: str, body: dict, timeout: float) -> tuple[dict, float]:
        t0 = time.perf_counter()
        res = await self.call(Chunk(body["pos"], _n(body), tokens=body.get("tokens"), hidden=body.get("hidden"),
                                    verify=bool(body.get("verify"))), kind, body.get("sample", True))
        return res, (time.perf_counter() - t0) * 1e3

    async def call(self, chunk: Chunk, kind: str, sample: bool) -> dict:
        res: dict = {}
        verify, last = chunk.verify, len(self.members) - 1
        for k, m in enumerate(self.members):
            chunk = dataclasses.replace(chunk, verify=verify and k == last)  # only the last member chooses tokens
            b = chunk.body(self.gen.sid, **({} if sample else {"sample": False}))
            res, _ = await m.session.timed(kind, b, self.gen.deadline(m, chunk.n))
            m.history.append(chunk)
            if k < len(self.members) - 1:
                h = res.get("hidden")
                if h is None:
                    raise HopFailed(m.peer.peer_id, "a sub-chain member returned no hidden state", "protocol")
                chunk = Chunk(chunk.pos, chunk.n, hidden={"dtype": h.dtype, "shape": list(h.shape),
                                                          "data": bytes(h.data)})
        return res

    async def close(self, sid: bytes) -> None:
        for m in self.members:
            await m.session.close(sid)

    async def abort(self) -> None:
        for m in self.members:
            await m.session.abort()


def _n(body: dict) -> int:
    if body.get("tokens") is not None:
        return len(body["tokens"])
    return body["hidden"]["shape"][1] if isinstance(body["hidden"], dict) else body["hidden"].shape[1]


@dataclass
class ChainWitness:
    """What checked_call needs of a witness, for a sub-chain: its first member stands for it in reports."""

    peer: object
    session: ChainSession
    history: list = field(default_factory=list)


def members_of(witness) -> list:
    """The replicas a witness (a Hop, or a sub-chain's ChainWitness) consists of."""
    return witness.session.members if isinstance(witness, ChainWitness) else [witness]


async def open_subchain(gen, pids: list[str], history: list) -> ChainWitness:
    """Sessions on every member, replayed the inputs the checked hop received (each member gets what the one
    before it computed from them)."""
    members: list[Hop] = []
    cs = ChainSession(gen, members)
    try:
        for pid in pids:
            hs = await gen.net.session(pid, gen.open_timeout)
            m = Hop(gen.view.workers[pid], hs)
            members.append(m)
            await hs.open(gen._open_body(m.peer), gen.open_timeout)
        for ch in replay_plan(history, gen.exact_replay_max):
            await cs.call(ch, "prefill", sample=False)
    except (HopFailed, HopError):
        await cs.abort()
        raise
    return ChainWitness(members[0].peer, cs, list(history))


async def checked_call(gen, i: int, kind: str, chunk, witness_only: tuple[dict, float] | None = None) \
        -> tuple[dict, float]:
    """Hop i's call, mirrored on its witness and compared; raises HopFailed/HopError for the hop's own failure
    (the caller repairs as usual). Returns (result, ms) of whichever replica now holds hop i. `witness_only`:
    the hop already answered this call (its witness failed); only a new witness computes it."""
    sc: SpotChecker = gen.checker
    chk = sc.checks[i]
    hop = gen.hops[i]
    body = chunk.body(gen.sid)
    out: dict = {} if witness_only is None else {"hop": witness_only}

    async def run(name, h):
        try:
            out[name] = await h.session.timed(kind, body, gen.deadline(h, chunk.n))
        except (HopFailed, HopError) as e:
            out[name] = e

    async def witness():
        if chk.witness is None:  # opened and replayed while the hop already computes: no tell-tale pause
            chk.witness = await side_hop(gen, i, [], standing="any" if chk.full else "prefer")
            if chk.witness is None:
                out["witness"] = None
                return
        await run("witness", chk.witness)

    async with trio.open_nursery() as n:
        if witness_only is None:
            n.start_soon(run, "hop", hop)
        n.start_soon(witness)
    wit = chk.witness
    if isinstance(out["hop"], Exception):
        await sc.drop(i)
        raise out["hop"]
    if out["witness"] is None:
        sc.counters["no_replica"] += 1
        await sc.drop(i)
        return out["hop"]
    if isinstance(out["witness"], Exception):  # the witness failed: no verdict on the hop, and no blame
        sc.counters["aborted"] += 1
        if chk.full:
            # probation goes on: this call is checked again on another witness, replayed the hop's inputs up to it
            members = members_of(wit)
            gen.accounts.avoid([m.peer.peer_id for m in members])
            with trio.CancelScope(shield=True):
                await wit.session.abort()
            chk.witness = None
            return await checked_call(gen, i, kind, chunk, witness_only=out["hop"])
        await sc.drop(i)
        return out["hop"]
    (res, ms), (wres, wms) = out["hop"], out["witness"]
    sc.counters["calls"] += 1
    if await _same(res, wres):
        wit.history.append(chunk)
        chk.matched += 1
        chk.calls_left -= 1
        if chk.calls_left == 0:
            gen.view.outcome([wit.peer.peer_id], True)  # it computed a whole window right: this seeker's credit
            await sc.drop(i)
        return res, ms
    sc.counters["mismatches"] += 1
    return await _arbitrate(gen, i, kind, body, chunk, (res, ms), (wres, wms))


async def _arbitrate(gen, i: int, kind: str, body: dict, chunk, mine: tuple[dict, float],
                     theirs: tuple[dict, float]) -> tuple[dict, float]:
    """Hop i and its witness disagree: an arbiter (a third replica, fed the same inputs) decides. A liar is
    convicted; when it is the hop, the witness takes its place. Returns the result the chain goes on with."""
    sc: SpotChecker = gen.checker
    hop, wit = gen.hops[i], sc.checks[i].witness
    (res, ms), (wres, wms) = mine, theirs
    arb = await side_hop(gen, i, [wit], standing="require")  # replayed the inputs both got before this call
    ares = None
    if arb is not None:
        try:
            ares, _ = await arb.session.timed(kind, body, gen.deadline(arb, chunk.n))
        except (HopFailed, HopError) as e:
            log.info("spot check: arbiter %s failed (%s)", arb.peer.peer_id[-8:], e)
        await arb.session.close(gen.sid)
    verdict = await trio.to_thread.run_sync(arbitrate, res, wres, ares)
    inp = input_digest(chunk)
    if verdict.liar == "hop" and isinstance(wit, ChainWitness):
        gen.accounts.convicted(hop.peer.peer_id, wit.peer.peer_id, arb.peer.peer_id, evidence(inp, res, wres, ares))
        log.warning("spot check: hop %d %s returned wrong output (sub-chain witness and arbiter agree)", i,
                    hop.peer.peer_id[-8:])
        await sc.drop(i)
        raise Convicted(hop.peer.peer_id, i)
    if verdict.liar == "hop":
        gen.accounts.convicted(hop.peer.peer_id, wit.peer.peer_id, arb.peer.peer_id, evidence(inp, res, wres, ares))
        log.warning("spot check: hop %d %s returned wrong output (witness %s, arbiter %s agree); replaced",
                    i, hop.peer.peer_id[-8:], wit.peer.peer_id[-8:], arb.peer.peer_id[-8:])
        sc.checks.pop(i, None)  # the witness becomes the hop: not closed
        await gen.swap_hop(i, wit)
        return wres, wms
    if verdict.liar == "witness":
        gen.accounts.convicted(wit.peer.peer_id, hop.peer.peer_id, arb.peer.peer_id, evidence(inp, wres, res, ares))
        log.warning("spot check: witness %s returned wrong output for hop %d", wit.peer.peer_id[-8:], i)
    else:  # one of the two lied and nobody can say which
        sc.counters["inconclusive"] += 1
        members = members_of(wit)
        gen.accounts.avoid([m.peer.peer_id for m in members])
        await sc.drop(i)
        if min(gen.view.trust(m.peer.peer_id) for m in members) < gen.params.trust_floor:
            # a witness below the floor (a probation check's last resort) detects, but its word alone never
            # costs a hop routing trusts its place: the hop's output goes on
            log.warning("spot check: hop %d %s and witness %s (below the trust floor) disagree, no arbiter: the "
                        "hop's output goes on", i, hop.peer.peer_id[-8:], wit.peer.peer_id[-8:])
            return res, ms
        # neither output goes on, neither peer is blamed: the hop is repaired
        log.warning("spot check: hop %d %s and witness %s disagree, arbiter %s: inconclusive; repairing the hop", i,
                    hop.peer.peer_id[-8:], wit.peer.peer_id[-8:], "agrees with neither" if arb else "none known")
        raise HopError(hop.peer.peer_id, "inconclusive", "its output and its witness's differ and no arbiter "
                       "settled it", request=kind, local=True)
    await sc.drop(i)
    return res, ms


async def _same(a: dict, b: dict) -> bool:
    """same_output; off the event loop when the bytes differ and a float comparison is needed."""
    ha, hb = a.get("hidden"), b.get("hidden")
    if ha is None or hb is None or bytes(ha.data) == bytes(hb.data):
        return same_output(a, b)
    return await trio.to_thread.run_sync(same_output, a, b)
