"""The worker's session table (protocols/sessions.py): fair-share admission and eviction (pure)."""

from __future__ import annotations

import os

import pytest

from gtracd.protocols.sessions import Refused, SessionTable


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
