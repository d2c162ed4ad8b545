import math
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gtracd.routing import (
    NoRoute,
    Params,
    Peer,
    Snapshot,
    effective_latency,
    eps_from_floor,
    h_max,
    replacement,
    route,
    trust_floor,
)
from gtracd.routing.core import explain

PARAMS = Params(trust_floor=0.9, penalty_ms=500.0, min_reliability=0.8)


@st.composite
def snapshots(draw):
    layers = draw(st.integers(1, 7))  # <= 8 boundaries
    n = draw(st.integers(0, 30))
    peers = []
    for i in range(n):
        a = draw(st.integers(0, layers - 1))
        b = draw(st.integers(a + 1, layers))
        trust = draw(st.sampled_from([0.0, 0.5, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0]) | st.floats(0, 1))
        lat = draw(st.sampled_from([1.0, 5.0, 10.0, 50.0]) | st.floats(0, 1000))
        peers.append(Peer(f"p{i:02d}", a, b, trust, lat, draw(st.booleans() | st.just(True))))
    return Snapshot(layers, peers)


def all_chains(s: Snapshot, ok):
    out = []

    def walk(v, acc):
        if v == s.layers:
            out.append(list(acc))
            return
        for p in s.peers:
            if p.start == v and ok(p):
                acc.append(p)
                walk(p.end, acc)
                acc.pop()

    walk(0, [])
    return out


def close(a, b):
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def floor_ok(p):
    return p.alive and p.trust >= PARAMS.trust_floor


def alive(p):
    return p.alive


PROP = settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))


@PROP
@given(snapshots())
def test_gtrac_is_min_effective_latency_among_floor_chains(s):
    chains = all_chains(s, floor_ok)
    if not chains:
        with pytest.raises(NoRoute):
            route(s, "g-trac", PARAMS)
        return
    r = route(s, "g-trac", PARAMS)
    assert all(floor_ok(p) for p in r.chain)
    assert [p.start for p in r.chain][0] == 0 and r.chain[-1].end == s.layers
    best = min(sum(effective_latency(p, PARAMS.penalty_ms) for p in c) for c in chains)
    assert close(r.cost, best)


@PROP
@given(snapshots())
def test_sp_minimises_latency(s):
    chains = all_chains(s, alive)
    if not chains:
        with pytest.raises(NoRoute):
            route(s, "sp", PARAMS)
        return
    assert close(route(s, "sp", PARAMS).latency_ms, min(sum(p.latency_ms for p in c) for c in chains))


@PROP
@given(snapshots())
def test_mr_maximises_reliability(s):
    chains = all_chains(s, alive)
    if not chains:
        with pytest.raises(NoRoute):
            route(s, "mr", PARAMS)
        return
    assert close(route(s, "mr", PARAMS).reliability, max(math.prod(p.trust for p in c) for c in chains))


@PROP
@given(snapshots())
def test_larac_meets_constraint_whenever_possible(s):
    chains = all_chains(s, alive)
    if not chains:
        with pytest.raises(NoRoute):
            route(s, "larac", PARAMS)
        return
    r = route(s, "larac", PARAMS)
    feasible = [c for c in chains if math.prod(p.trust for p in c) >= PARAMS.min_reliability - 1e-12]
    if feasible:
        assert r.feasible and r.reliability >= PARAMS.min_reliability - 1e-9
        # and it never beats the true constrained optimum (sanity of the relaxation)
        assert r.latency_ms >= min(sum(p.latency_ms for p in c) for c in feasible) - 1e-9
    else:
        assert not r.feasible


@PROP
@given(snapshots(), st.sampled_from(["g-trac", "sp", "mr", "larac", "naive"]))
def test_no_route_exactly_when_none_exists_and_gap_is_uncovered(s, mode):
    ok = floor_ok if mode == "g-trac" else alive
    chains = all_chains(s, ok)
    try:
        r = route(s, mode, PARAMS, rng=random.Random(1))
    except NoRoute as e:
        assert not chains
        a, b = e.gap
        assert 0 <= a < b <= s.layers
        assert not any(ok(p) and p.start == a for p in s.peers if all_reaches(s, ok, p.start))
        return
    assert chains and r.ids in [[p.id for p in c] for c in chains]


def all_reaches(s, ok, v):
    reach = {0}
    for p in sorted(s.peers, key=lambda p: p.start):
        if ok(p) and p.start in reach:
            reach.add(p.end)
    return v in reach


@PROP
@given(snapshots(), st.permutations(list(range(30))))
def test_deterministic_under_input_order(s, perm):
    shuffled = [s.peers[i] for i in perm if i < len(s.peers)]
    t = Snapshot(s.layers, shuffled)
    for mode in ("g-trac", "sp", "mr", "larac"):
        try:
            a = route(s, mode, PARAMS).ids
        except NoRoute:
            with pytest.raises(NoRoute):
                route(t, mode, PARAMS)
            continue
        assert route(t, mode, PARAMS).ids == a


def test_naive_is_uniform_chi_square():
    # 0 -> 2 -> 4 with 3 x 2 direct options plus 2 one-hop peers: 8 complete chains
    peers = [Peer(f"a{i}", 0, 2, 0.9, 1) for i in range(3)] + [Peer(f"b{i}", 2, 4, 0.9, 1) for i in range(2)] + \
            [Peer(f"c{i}", 0, 4, 0.9, 1) for i in range(2)] + [Peer("dead", 0, 4, 0.9, 1, alive=False)]
    s = Snapshot(4, peers)
    rng = random.Random(1234)
    n = 16_000
    counts = Counter(tuple(route(s, "naive", rng=rng).ids) for _ in range(n))
    assert len(counts) == 8 and all("dead" not in c for c in counts)
    exp = n / 8
    chi2 = sum((c - exp) ** 2 / exp for c in counts.values())
    assert chi2 < 24.3  # df=7, p = 0.001


def test_worked_example_honeypot():
    s = Snapshot(6, [Peer("a", 0, 3, 0.99, 10), Peer("honeypot", 3, 6, 0.5, 1), Peer("c", 3, 6, 0.99, 50)])
    assert route(s, "sp").ids == ["a", "honeypot"]
    assert route(s, "g-trac").ids == ["a", "c"]
    assert route(s, "mr").ids == ["a", "c"]


def test_no_route_names_the_layer_range():
    s = Snapshot(30, [Peer("a", 0, 10, 0.99, 1), Peer("b", 10, 20, 0.5, 1), Peer("c", 20, 30, 0.99, 1)])
    with pytest.raises(NoRoute, match="layers 10:20 are uncovered") as ei:
        route(s, "g-trac")
    assert ei.value.gap == (10, 20)
    assert route(s, "sp").ids == ["a", "b", "c"]
    ex = explain(s, "g-trac", Params())
    assert "below the floor" in ex["b"] and "no complete chain" in ex["c"]


def test_trust_floor_lemma():
    assert h_max(36, 3) == 12 and h_max(30, 7) == 5
    tau = trust_floor(0.2, 12)
    assert close(eps_from_floor(tau, 12), 0.2)
    assert tau**12 >= 0.8 - 1e-12
    # the paper's floor 0.96 with H_max = 5 bounds risk at 1 - 0.96^5
    assert close(eps_from_floor(0.96, 5), 1 - 0.96**5)


def test_replacement_same_range_trusted_fastest_not_failed():
    failed = Peer("f", 10, 20, 0.99, 5)
    s = Snapshot(30, [failed, Peer("slow", 10, 20, 0.99, 100), Peer("fast", 10, 20, 0.99, 10),
                      Peer("untrusted", 10, 20, 0.5, 1), Peer("dead", 10, 20, 0.99, 1, alive=False),
                      Peer("other", 10, 25, 0.99, 1)])
    assert replacement(s, failed).id == "fast"
    assert replacement(s, failed, exclude={"fast"}).id == "slow"
    assert replacement(s, failed, exclude={"fast", "slow"}) is None


def test_route_from_a_middle_boundary_and_exclusions():
    s = Snapshot(6, [Peer("a", 0, 3, 0.99, 1), Peer("b", 3, 6, 0.99, 1), Peer("c", 3, 6, 0.99, 2)])
    assert route(s, src=3).ids == ["b"]
    assert route(s, src=3, exclude={"b"}).ids == ["c"]


def test_invalid_peers_are_reported_not_routed():
    s = Snapshot(4, [Peer("bad", 2, 9, 0.99, 1), Peer("nan", 0, 4, 0.99, float("nan")), Peer("ok", 0, 4, 1, 1)])
    assert route(s).ids == ["ok"]
    assert set(s.invalid) == {"bad", "nan"}


@given(st.floats(0.0, 0.99), st.integers(1, 50))
def test_floor_round_trip(eps, h):
    assume(eps > 1e-9)
    assert math.isclose(eps_from_floor(trust_floor(eps, h), h), eps, rel_tol=1e-6, abs_tol=1e-12)


def test_route_cli_json_and_explain(tmp_path, capsys):
    import json

    from gtracd.cli.main import main

    snap = tmp_path / "s.json"
    snap.write_text(json.dumps({"layers": 30, "peers": [
        {"id": "w1", "start": 0, "end": 10, "trust": 0.99, "latency_ms": 40},
        {"id": "w2", "start": 10, "end": 20, "trust": 0.5, "latency_ms": 5},
        {"id": "w3", "start": 10, "end": 20, "trust": 0.98, "latency_ms": 60},
        {"id": "w4", "start": 20, "end": 30, "trust": 0.99, "latency_ms": 70, "alive": True}]}))
    assert main(["route", "--snapshot", str(snap), "--mode", "g-trac", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["chain"] == ["w1", "w3", "w4"] and set(out) == {"mode", "chain", "latency_ms", "reliability", "cost",
                                                              "selection_ms"}
    assert main(["route", "--snapshot", str(snap), "--mode", "sp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chain"] == ["w1", "w2", "w4"]
    assert main(["route", "--snapshot", str(snap), "--trust-floor", "0.999", "--explain"]) == 1
    err = capsys.readouterr().err
    assert "layers 0:10 are uncovered" in err or "hosts layer 0" in err
    snap.write_text('{"layers": 3, "peers": [{"id": "x"}]}')
    assert main(["route", "--snapshot", str(snap)]) == 2


def test_bench_routing_runs_and_reports_every_mode():
    from gtracd.benchmarks.routing import run

    rows = run(sizes=(36, 112))
    assert {(r["mode"], r["peers"]) for r in rows} == {(m, n) for m in ("g-trac", "sp", "mr", "larac", "naive")
                                                      for n in (36, 112)}
    assert all(r["p99_ms"] >= r["p50_ms"] > 0 for r in rows)
