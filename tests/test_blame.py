"""Blame rules (what a failed hop costs a worker) and the worker's fair-share session admission (pure)."""

from __future__ import annotations

import os

import pytest

from gtracd.net.hop import HopError, HopFailed
from gtracd.protocols.sessions import Refused, SessionTable
from gtracd.seeker.blame import verdict


@pytest.mark.parametrize("err, kind, blamed", [
    (HopError("p" * 10, "busy", "full", 2.0), "refusal", False),
    (HopError("p" * 10, "draining", "leaving"), "refusal", False),
    (HopError("p" * 10, "unknown_session", "evicted"), "eviction", False),
    (HopError("p" * 10, "cancelled", "by you"), "seeker", False),
    (HopError("p" * 10, "too_long", "past max_length"), "seeker", False),
    (HopFailed("p" * 10, "no answer to step within 2.0s", "timeout"), "timeout", True),
    (HopFailed("p" * 10, "sent a malformed frame", "protocol"), "protocol", True),
    (HopFailed("p" * 10, "a message that says timed out, but is a transport failure"), "transport", True),
    (HopFailed("p" * 10, "stream closed (EOF)"), "transport", True),
    (HopError("p" * 10, "internal", "boom"), "error", True),
    (HopError("p" * 10, "wrong_model", "not that model"), "error", True),
    (HopError("p" * 10, "unbound", "no proof"), "error", True),
    (HopError("p" * 10, "wrong_output", "spot check"), "wrong_output", True),
])
def test_blame_rules(err, kind, blamed):
    v = verdict(err)
    assert (v.kind, v.blamed) == (kind, blamed)
    if kind == "refusal" and err.retry_after_s:
        assert v.retry_after_s == err.retry_after_s


def sid():
    return os.urandom(16)


def test_a_flood_never_evicts_another_peers_sessions_within_its_share():
    t = SessionTable(max_sessions=8, token_budget=800, ttl_s=600)
    honest = [sid() for _ in range(2)]
    for s in honest:
        t.open(s, 100, 0.0, "honest")
        t.reserve(s, 100, 1.0)
    refused = 0
    for k in range(100):  # the attacker opens and fills sessions; some it keeps busy (mid-step)
        s = sid()
        try:
            t.open(s, 100, 2.0 + k, "attacker")
            t.reserve(s, 100, 2.0 + k)
            t.touch(s, 2.0 + k, busy=k % 2 == 0)
        except Refused as e:
            assert e.code == "busy" and e.retry_after_s > 0
            refused += 1
    assert refused > 0
    assert all(s in t for s in honest)  # never evicted
    assert t.owned("attacker")[0] <= t.per_owner_sessions and t.owned("attacker")[1] <= t.per_owner_tokens


def test_room_for_a_newcomer_comes_from_the_peer_over_its_share():
    t = SessionTable(max_sessions=4, token_budget=1000, ttl_s=600)
    a = [sid() for _ in range(3)]
    for k, s in enumerate(a):
        t.open(s, 100, float(k), "A")
    b = sid()
    t.open(b, 100, 5.0, "B")  # 4 sessions: full
    c = sid()
    evicted = t.open(c, 100, 6.0, "B")  # A holds 3 > share 2: A's oldest idle session goes, not B's
    assert evicted == [a[0]] and b in t and c in t


def test_busy_sessions_are_never_evicted():
    t = SessionTable(max_sessions=3, token_budget=100, ttl_s=600)
    for owner in ("A", "A", "B"):
        x = sid()
        t.open(x, 100, 0.0, owner)
        t.touch(x, 1.0, busy=True)
    with pytest.raises(Refused) as e:
        t.open(sid(), 10, 2.0, "B")
    assert e.value.code == "busy" and len(t) == 3


async def test_bytes_in_flight_are_capped_per_peer_and_overall():
    import trio

    from gtracd.worker.compute import InFlight

    f = InFlight(per_peer=100, total=150)
    await f.acquire("a", 60)
    await f.acquire("a", 40)
    with trio.move_on_after(0.05) as cs:
        await f.acquire("a", 1)  # a is at its cap: waits
    assert cs.cancelled_caught
    await f.acquire("b", 50)  # another peer still fits under the total
    got = trio.Event()

    async def more_b():
        await f.acquire("b", 10)  # over the total until a releases
        got.set()

    async with trio.open_nursery() as n:
        n.start_soon(more_b)
        await trio.testing.wait_all_tasks_blocked()
        assert not got.is_set()
        f.release("a", 60)
        with trio.fail_after(1):
            await got.wait()
    assert f.by == {"a": 40, "b": 60} and f.sum == 100
    f.release("a", 40)
    f.release("b", 60)
    await f.acquire("c", 10_000)  # with nothing in flight one frame always fits (frames are capped by the wire)


async def test_compute_is_shared_round_robin_and_a_full_queue_is_busy_not_a_wait():
    import trio

    from gtracd.worker.compute import FairCompute

    fc = FairCompute(per_peer=3, total=5)
    order: list[str] = []
    gate = trio.Event()

    async def call(peer: str, started=None):
        async with fc.slot(peer):
            if started is not None:
                started.set()
                await gate.wait()
            order.append(peer)

    async with trio.open_nursery() as n:
        first = trio.Event()
        n.start_soon(call, "flood", first)
        await first.wait()  # the flood holds the slot; it queues 3 more, then the honest peer asks once
        for _ in range(3):
            n.start_soon(call, "flood")
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(call, "honest")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Refused) as e:
            async with fc.slot("flood"):  # its own queue is full: refused at once
                pass
        assert e.value.code == "busy" and e.value.retry_after_s > 0
        gate.set()
    assert order[:2] == ["flood", "flood"] and order.index("honest") == 2  # served right after one flood call
    assert not fc.running and fc.waiting == 0 and not fc.queues


async def test_a_cancelled_waiter_never_leaks_the_compute_slot():
    import trio

    from gtracd.worker.compute import FairCompute

    fc = FairCompute()
    gate = trio.Event()

    async def hold():
        async with fc.slot("a"):
            await gate.wait()

    async with trio.open_nursery() as n:
        n.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.02):
            async with fc.slot("b"):
                pass
        gate.set()
    async with fc.slot("c"):  # free again
        pass
    assert not fc.running and fc.waiting == 0


def _gen():
    from gtracd.control.peerview import PeerView
    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation

    return Generation(None, PeerView(), Params())


def test_a_blamed_peer_outside_the_chain_is_reported_alone():
    g = _gen()  # e.g. the first peer of a chain could not be reached: nothing else is blamed
    g._failed("cannot reach X", "X", True)
    assert g.report_bodies("n", False, "X", 0) == [
        {"network": "n", "request_id": g.sid, "model": "", "mode": "g-trac", "tokens": 0, "chain": ["X"],
         "latency_ms": [], "outcome": "failure", "culprit": 0}]
    g2 = _gen()
    g2._failed("worker busy", "X", False)  # a refusal: nobody is reported
    assert g2.report_bodies("n", False, None, 0) == []


def test_a_relayed_hidden_state_is_checked_before_the_next_hop_sees_it():
    from gtracd.wire.tensor import WireTensor

    g = _gen()
    ok = WireTensor("float32", (1, 3, 8), memoryview(bytes(96)))
    assert g._bad_hidden(ok, 3) is None
    assert "shape" in g._bad_hidden(WireTensor("float32", (1, 3, 9), memoryview(bytes(108))), 3)  # width changed
    assert "shape" in g._bad_hidden(WireTensor("float32", (1, 2, 8), memoryview(bytes(64))), 3)
    assert "dtype" in g._bad_hidden(WireTensor("int64", (1, 3, 8), memoryview(bytes(192))), 3)
    assert g._bad_hidden(None, 3) == "no hidden state"


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
