"""Blame rules (what a failed hop costs a worker) and the worker's fair-share session admission (pure)."""

from __future__ import annotations

import os

import pytest

from gtracd.net.hop import HopError, HopFailed
from gtracd.seeker.blame import verdict
from gtracd.sessions import Refused, SessionTable


@pytest.mark.parametrize("err, kind, blamed", [
    (HopError("p" * 10, "busy", "full", 2.0), "refusal", False),
    (HopError("p" * 10, "draining", "leaving"), "refusal", False),
    (HopError("p" * 10, "unknown_session", "evicted"), "eviction", False),
    (HopError("p" * 10, "cancelled", "by you"), "seeker", False),
    (HopError("p" * 10, "too_long", "past max_length"), "seeker", False),
    (HopFailed("p" * 10, "no answer to step within 2.0s"), "timeout", True),
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

    from gtracd.roles.worker import InFlight

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
        await trio.sleep(0.02)
        assert not got.is_set()
        f.release("a", 60)
        with trio.fail_after(1):
            await got.wait()
    assert f.by == {"a": 40, "b": 60} and f.sum == 100
    f.release("a", 40)
    f.release("b", 60)
    await f.acquire("c", 10_000)  # with nothing in flight one frame always fits (frames are capped by the wire)
