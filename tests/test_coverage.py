"""Layer coverage (pure): replicas per layer at or above the trust floor, holes, the weakest span."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gtracd.routing import NoRoute, Params, Peer, Snapshot, route
from gtracd.routing.coverage import coverage, runs


@st.composite
def snapshots(draw):
    layers = draw(st.integers(1, 24))
    peers = []
    for k in range(draw(st.integers(0, 12))):
        a = draw(st.integers(0, layers - 1))
        b = draw(st.integers(a + 1, layers))
        peers.append(Peer(f"p{k}", a, b, draw(st.sampled_from([0.5, 0.96, 0.99, 1.0])),
                          draw(st.floats(0.0, 500.0)), draw(st.booleans())))
    return Snapshot(layers, peers)


@settings(max_examples=300, deadline=None)
@given(snapshots())
def test_coverage_matches_a_direct_count_and_routing(snap):
    c = coverage(snap, 0.96)
    ok = [p for p in snap.peers if p.alive and p.trust >= 0.96]
    for layer in range(snap.layers):
        hosts = [p for p in ok if p.start <= layer < p.end]
        assert c.replicas[layer] == len(hosts)
        want = min((p.latency_ms / (p.end - p.start) for p in hosts), default=math.inf)
        assert c.best_ms_per_layer[layer] == want
    assert all(c.replicas[a] == 0 for a, b in c.holes for _ in range(a, b))
    assert sum(b - a for a, b in c.holes) == c.replicas.count(0)
    a, b = c.weakest()
    assert all(c.replicas[i] == c.min_replicas for i in range(a, b))
    try:  # a chain needs every layer covered (not conversely: chained ranges must meet at their boundaries)
        route(snap, "g-trac", Params(trust_floor=0.96))
        assert c.complete
    except NoRoute:
        pass


def test_worked_example():
    snap = Snapshot(6, [Peer("a", 0, 3, 1.0, 30.0), Peer("b", 0, 2, 0.99, 10.0), Peer("c", 3, 4, 0.5, 1.0),
                        Peer("d", 4, 6, 1.0, 8.0, alive=False)])
    c = coverage(snap, 0.96)
    assert c.replicas == (2, 2, 1, 0, 0, 0) and c.holes == [(3, 6)] and c.weakest() == (3, 6)
    assert c.best_ms_per_layer[:3] == (5.0, 5.0, 10.0) and not c.complete
    assert runs([1, 0, 0, 1, 0], lambda n: n == 0) == [(1, 3), (4, 5)]
