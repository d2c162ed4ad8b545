"""Spot-check comparison, arbitration and evidence (seeker/spotcheck.py, pure)."""

from __future__ import annotations


def _h(values, dtype="float32"):
    import struct

    from gtracd.wire.tensor import WireTensor

    data = struct.pack(("<%df" if dtype == "float32" else "<%de") % len(values), *values)
    return {"hidden": WireTensor(dtype, (1, 1, len(values)), memoryview(data))}


def test_spot_check_comparison_and_arbitration():
    from gtracd.seeker.spotcheck import RTOL, arbitrate, evidence, input_digest, output_digest, same_output

    base = [1.0, -2.0, 4.0, 0.5]
    assert same_output(_h(base), _h(base))  # bit-identical
    assert same_output(_h(base), _h([1.0 + 4.0 * RTOL * 0.5, -2.0, 4.0, 0.5]))  # honest rounding
    assert not same_output(_h(base), _h([1.0 + 4.0 * RTOL * 2, -2.0, 4.0, 0.5]))  # beyond the tolerance
    assert not same_output(_h(base), _h([float("nan"), -2.0, 4.0, 0.5]))
    assert not same_output(_h(base), _h(base, "float16"))  # another dtype is another computation
    assert same_output({"token": 5}, {"token": 5}) and not same_output({"token": 5}, {"token": 6})
    lie = _h([9.0, 9.0, 9.0, 9.0])
    assert arbitrate(lie, _h(base), _h(base)).liar == "hop"
    assert arbitrate(_h(base), lie, _h(base)).liar == "witness"
    assert arbitrate(_h(base), lie, _h([0.0] * 4)).liar is None  # agrees with neither: nobody accused
    assert arbitrate(_h(base), lie, None).liar is None
    from gtracd.seeker.generation import Chunk

    ev = evidence(input_digest(Chunk(0, 2, tokens=[1, 2])), lie, _h(base), _h(base))
    assert len(ev["input"]) == 32 and ev["outputs"][0] != ev["outputs"][1] == ev["outputs"][2]
    assert output_digest({"token": 5}) != output_digest({"token": 6})


# ---- Trust II, item 3: witnesses and arbiters per host, arbiters with standing of their own
class _Gen:
    """What side_hop reads of a generation: the view, the chain, the rng, and a recording open_replayed."""

    def __init__(self, view, chain_hop, rng):
        from gtracd.routing import Params
        from gtracd.seeker.checker import SpotChecker
        self.view, self.model, self.params = view, "m", Params()
        self.hops = [chain_hop]
        self.failed = frozenset()
        self.checker = SpotChecker(rng=rng)
        self.opened = []

    @property
    def chain(self):
        return [h.peer.peer_id for h in self.hops]

    def banned(self):
        return set()

    async def open_replayed(self, pid, history):
        self.opened.append(pid)
        return pid


def _net(sybil_hosts: int, per_host: int, honest_standing: bool = True):
    from gtracd.control.peerview import PeerView, WorkerEntry
    from gtracd.seeker.hops import Hop

    v = PeerView(probation=1000)  # every identity routable here (the view's own bound is tested elsewhere)

    def add(pid, host):
        v.heard(WorkerEntry(pid, f"/ip4/127.0.0.1/tcp/1/p2p/{host}", 0, 10, 10, "m", last_seen=1e12))
    add("hop", "Hhop")
    add("honest", "Hhonest")
    if honest_standing:
        v.outcome(["honest"], True)  # a completed request: earned trust
    for h in range(sybil_hosts):
        for k in range(per_host):
            add(f"s{h}-{k}", f"Hs{h}")
    return v, Hop(v.workers["hop"], session=None)


async def test_free_identities_never_arbitrate_and_cannot_crowd_out_a_witness():
    import random

    from gtracd.seeker.checker import side_hop

    v, hop = _net(2, 50)
    picks = []
    for seed in range(200):
        g = _Gen(v, hop, random.Random(seed))
        picks.append(await side_hop(g, 0, [], standing="require"))
        assert await side_hop(g, 0, [], standing="prefer") == "honest"  # standing hosts first
    assert set(picks) == {"honest"}
    v2, hop2 = _net(2, 50, honest_standing=False)  # nobody has standing: no arbiter at all, witnesses per host
    g = _Gen(v2, hop2, random.Random(1))
    assert await side_hop(g, 0, [], standing="require") is None
    hosts = []
    for seed in range(600):
        w = await side_hop(_Gen(v2, hop2, random.Random(seed)), 0, [], standing="prefer")
        hosts.append("honest" if w == "honest" else w.split("-")[0])
    share = hosts.count("honest") / len(hosts)
    assert 0.2 < share < 0.5  # one host in three, although it holds 1 identity in 101


def test_a_range_with_no_exact_replica_is_covered_by_sub_chains_on_distinct_hosts():
    """Issue 23, item 9: 0:4 among 0:2s and 2:4s is witnessed by a sub-chain; members never share a host."""
    from gtracd.routing import Peer
    from gtracd.seeker.checker import covers

    peers = [Peer("a", 0, 2, 1, 1, True), Peer("b", 2, 4, 1, 1, True), Peer("c", 0, 1, 1, 1, True),
             Peer("d", 1, 2, 1, 1, True), Peer("e", 2, 4, 1, 1, True), Peer("whole", 0, 4, 1, 1, True)]
    host = {"a": "H1", "b": "H2", "c": "H3", "d": "H1", "e": "H1", "whole": "H9"}
    found = covers(peers, 0, 4, host.get)
    assert [[p.id for p in c] for c in found] == [["a", "b"], ["c", "d", "b"]]  # shortest first; a+e share H1
    assert covers(peers, 0, 3, host.get) == []  # nothing ends at 3


async def test_the_first_checked_call_reaches_the_hop_before_its_witness_is_ready(monkeypatch):
    """Issue 23, item 9: the witness is opened and replayed while the hop computes, so no pause before the
    first checked call tells the hop it is being checked."""
    import random

    import trio

    from gtracd.seeker import checker
    from gtracd.seeker.hops import Chunk

    started = {}

    class Session:
        def __init__(self, name):
            self.name = name

        async def timed(self, kind, body, timeout):
            started.setdefault(self.name, trio.current_time())
            return {"token": 7, "compute_ms": 0.1}, 1.0

        async def close(self, sid):
            pass

    class H:
        def __init__(self, name):
            self.session, self.history = Session(name), []

    async def slow_witness(gen, i, avoid, standing="prefer"):
        await trio.sleep(0.5)  # opening and replaying the history takes a while
        return H("witness")

    monkeypatch.setattr(checker, "side_hop", slow_witness)
    gen = _Gen(None, H("hop"), random.Random(0))
    gen.sid, gen.deadline = b"s" * 16, lambda h, n: 5.0
    gen.checker.checks[0] = checker.Check(4)
    t0 = trio.current_time()
    res, _ = await checker.checked_call(gen, 0, "step", Chunk(3, 1, tokens=[5]))
    assert res["token"] == 7 and started["hop"] - t0 < 0.1 <= started["witness"] - t0
    assert gen.checker.counters["calls"] == 1 and gen.checker.counters["mismatches"] == 0


async def test_probation_checks_every_call_of_an_unverified_peer_and_only_the_rate_after():
    import random

    from gtracd.seeker.checker import SpotChecker

    verified = {"old"}
    sc = SpotChecker(rate=0.25, calls=4, rng=random.Random(1), probation=1, verified=lambda p: p in verified)
    await sc.plan(["new", "old"], horizon=30)
    assert sc.checks[0].full and sc.counters["probation"] == 1
    assert all(sc.due(0) for _ in range(30))  # every call of the turn
    drawn = 0
    for _ in range(400):
        await sc.plan(["old"], horizon=30)
        drawn += 0 in sc.checks
        assert 0 not in sc.checks or not sc.checks[0].full
    assert 60 < drawn < 140  # the random rate alone (0.25)
    off = SpotChecker(rate=0.0, probation=1, verified=lambda p: False)
    await off.plan(["new"], horizon=30)
    assert not off.checks  # spot checks off: no probation either
    class _Session:
        async def close(self, sid):
            pass

    class _Witness:
        peer = type("P", (), {"peer_id": "wit"})()
        session = _Session()

    await sc.plan(["new", "new2"], horizon=3)
    for i, matched in ((0, 3), (1, 2)):  # hop 0 matched every call; hop 1 had one call not compared equal
        sc.checks[i].witness, sc.checks[i].seen, sc.checks[i].matched = _Witness(), 3, matched
    assert await sc.end_turn() == [("new", "wit")] and not sc.checks


async def test_an_inconclusive_mismatch_lets_neither_output_go_on():
    """Lab II: hop and witness disagree and no arbiter settles it (none with standing on a third host): the
    seeker repairs the hop (unblamed) instead of going on with an output that may be the lie, and the
    witness is not used again in the request."""
    import random

    import pytest

    from gtracd.net.hop import HopError
    from gtracd.seeker.blame import verdict
    from gtracd.seeker.checker import Check, _arbitrate
    from gtracd.seeker.hops import Chunk, Hop
    from gtracd.seeker.repairs import Accounts

    v, hop = _net(0, 0)  # the hop and one replica with standing: no third host for an arbiter

    class _S:
        async def close(self, sid):
            pass

    g = _Gen(v, hop, random.Random(0))
    g.accounts, g.sid = Accounts(), b"s"
    wit = Hop(v.workers["honest"], session=_S())
    g.checker.checks[0] = Check(4, witness=wit, peer="hop")
    with pytest.raises(HopError) as e:
        await _arbitrate(g, 0, "step", {}, Chunk(5, 1, tokens=[3]), ({"token": 1}, 1.0), ({"token": 2}, 1.0))
    assert e.value.code == "inconclusive" and not verdict(e.value).blamed
    assert "honest" in g.accounts.failed and not g.accounts.wrong_outputs and 0 not in g.checker.checks
    assert g.checker.counters["inconclusive"] == 1


async def test_a_probation_witness_may_sit_below_the_floor_when_no_replica_above_it_exists():
    """Lab II: a new peer whose range no replica above τ_min serves is still checked (a witness only detects;
    convicting needs an arbiter with standing). Other checks keep to replicas above the floor."""
    import random

    from gtracd.seeker.checker import side_hop

    v, hop = _net(0, 0, honest_standing=False)
    v.set_ledger({"honest": 0.5}, {})  # the only other replica: below the floor
    g = _Gen(v, hop, random.Random(0))
    assert await side_hop(g, 0, [], standing="prefer") is None
    assert await side_hop(g, 0, [], standing="require") is None
    assert await side_hop(g, 0, [], standing="any") == "honest"


async def test_a_witness_gone_since_its_last_heartbeat_is_replaced_by_another_replica():
    """Lab II: a replica that crashed seconds ago still looks alive; the check tries another instead of
    going without (a probation hop unchecked is a liar's chance)."""
    import random

    from gtracd.net.hop import HopFailed
    from gtracd.seeker.checker import side_hop

    v, hop = _net(3, 1)  # the hop, "honest" (standing) and three one-identity hosts s0-0, s1-0, s2-0
    gone = {"honest", "s0-0", "s1-0"}

    class G(_Gen):
        async def open_replayed(self, pid, history):
            self.opened.append(pid)
            if pid in gone:
                raise HopFailed(pid, "cannot dial: connection refused")
            return pid

    for seed in range(20):
        g = G(v, hop, random.Random(seed))
        got = await side_hop(g, 0, [], standing="prefer")
        assert got in (None, "s2-0") and len(g.opened) <= 3 and len(set(g.opened)) == len(g.opened)
        for pid in gone | {"s2-0"}:
            v.workers[pid].alive = True  # (side_hop marked the dead ones unreachable)
    g = G(v, hop, random.Random(0))
    gone.discard("s1-0")
    assert await side_hop(g, 0, [], standing="prefer") in ("s1-0", "s2-0")


async def test_a_witness_below_the_floor_never_costs_a_trusted_hop_its_place():
    """A probation check's last-resort witness (below τ_min: perhaps a convicted liar) that disagrees with no
    arbiter to settle it: the hop's output goes on (measured: such witnesses failed every MR request through
    a range whose only trusted replica was in the chain)."""
    import random

    from gtracd.seeker.checker import Check, _arbitrate
    from gtracd.seeker.hops import Chunk, Hop
    from gtracd.seeker.repairs import Accounts

    v, hop = _net(0, 0, honest_standing=False)
    v.set_ledger({"honest": 0.3, "hop": 1.0}, {})

    class _S:
        async def close(self, sid):
            pass

    g = _Gen(v, hop, random.Random(0))
    g.accounts, g.sid = Accounts(), b"s"
    g.checker.checks[0] = Check(4, witness=Hop(v.workers["honest"], session=_S()), peer="hop", full=True)
    out = await _arbitrate(g, 0, "step", {}, Chunk(5, 1, tokens=[3]), ({"token": 1}, 1.0), ({"token": 2}, 1.0))
    assert out == ({"token": 1}, 1.0) and "honest" in g.accounts.failed and 0 not in g.checker.checks


def test_half_precision_wire_dtypes_allow_one_rounding_step_and_still_catch_lies():
    """--wire-dtype float16|bfloat16: honest replicas whose float32 values differ by rounding may land on
    neighbouring half-precision values; one step of a value's own magnitude is allowed, noise is not."""
    import random
    import struct

    from gtracd.seeker.spotcheck import same_output, ulp
    from gtracd.wire import decode_tensor, encode_tensor

    rng = random.Random(5)
    vals = [rng.gauss(0, 1) for _ in range(256)] + [40.0, -0.001]

    def wire(dtype, xs):
        if dtype == "float16":
            data = struct.pack(f"<{len(xs)}e", *xs)
        else:  # bfloat16: the top 16 bits of a float32
            data = b"".join(struct.pack("<H", struct.unpack("<I", struct.pack("<f", x))[0] >> 16) for x in xs)
        return {"hidden": decode_tensor(encode_tensor(dtype, (1, 1, len(xs)), data))}

    for dtype, bits in (("float16", 10), ("bfloat16", 7)):
        ref = wire(dtype, vals)
        up = wire(dtype, [x + ulp(x, bits) * 0.999 if i % 3 == 0 else x for i, x in enumerate(vals)])
        assert same_output(up, ref) and same_output(ref, ref)
        noisy = wire(dtype, [x + rng.gauss(0, 0.1) for x in vals])
        assert not same_output(noisy, ref)
        assert not same_output(wire(dtype, [x * 1.05 for x in vals]), ref)  # 5 % off: far more than a step
