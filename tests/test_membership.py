"""Self-placement and healing (pure): deterministic, joint, never leaves a coverable layer uncovered."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtracd.membership.healing import Mover, heal, holes
from gtracd.membership.placement import Budget, Footprint, Joiner, choose, place, replicas
from gtracd.routing import NoRoute, Params, Peer, Snapshot, route
from gtracd.worker.lifecycle import LOADING, SERVING, Lifecycle


def chained(layers: int, ranges) -> bool:
    snap = Snapshot(layers, [Peer(f"p{i}", a, b, 1.0, 10.0) for i, (a, b) in enumerate(ranges)])
    try:
        route(snap, "g-trac", Params())
        return True
    except NoRoute:
        return False


def test_six_workers_of_ten_layers_tile_smollm2_twice():
    fp = Footprint.uniform(30, 14 << 20, 108 << 20, 108 << 20)
    held = []
    for k in range(6):
        c = choose(fp, held, Budget(max_layers=10), f"w{k}")
        held.append(c.range)
    assert sorted(held) == [(0, 10), (0, 10), (10, 20), (10, 20), (20, 30), (20, 30)]
    assert min(replicas(30, held)) == 2


def test_memory_budget_counts_embeddings_and_head():
    fp = Footprint.uniform(10, per_layer=10, first=25, last=25)
    b = Budget(memory_bytes=60)
    assert choose(fp, [], b).range == (0, 3)  # 25 + 3 x 10
    assert choose(fp, [(0, 3)], b).range == (3, 9)  # 6 x 10, no head
    assert choose(fp, [(0, 3), (3, 9)], b).range == (9, 10)  # 10 + 25
    assert Budget(memory_bytes=20).max_end(0, fp) == 0  # not even the embeddings fit at layer 0...
    assert Budget(memory_bytes=20).fits(fp) and not Budget(memory_bytes=9).fits(fp)
    assert choose(fp, [], Budget(memory_bytes=20)).range == (1, 3)  # ...so it goes where it fits


def test_end_snaps_to_where_a_range_starts_so_chains_continue():
    fp = Footprint.uniform(30)
    # 0:10 is held and 15:30 is held; the hole 10:15 is followed by a range starting at 15
    c = choose(fp, [(0, 10), (15, 30)], Budget(max_layers=12))
    assert c.range == (10, 15)
    assert chained(30, [(0, 10), (15, 30), c.range])
    assert "10:15 had a hole" in c.reason


def test_two_simultaneous_joiners_pick_different_holes():
    fp = Footprint.uniform(30)
    got = place(fp, [(10, 20)], [Joiner("B", Budget(max_layers=10)), Joiner("A", Budget(max_layers=10))])
    assert {got["A"].range, got["B"].range} == {(0, 10), (20, 30)}
    assert got["A"].range == (0, 10)  # equal budgets: peer-id order


@st.composite
def networks(draw):
    layers = draw(st.integers(2, 30))
    held = []
    for _ in range(draw(st.integers(0, 6))):
        a = draw(st.integers(0, layers - 1))
        held.append((a, draw(st.integers(a + 1, layers))))
    joiners = [Joiner(f"j{k:02d}", Budget(max_layers=draw(st.integers(1, layers))))
               for k in range(draw(st.integers(1, 6)))]
    return layers, held, joiners


@settings(max_examples=400, deadline=None)
@given(networks(), st.randoms(use_true_random=False))
def test_joint_placement_is_deterministic_and_covers_holes_when_the_budget_suffices(net, rnd):
    layers, held, joiners = net
    fp = Footprint.uniform(layers)
    got = place(fp, held, joiners)
    shuffled = list(joiners)
    rnd.shuffle(shuffled)
    assert place(fp, list(reversed(held)), shuffled) == got  # any order of the same view: the same answer
    for c in got.values():
        assert 0 <= c.start < c.end <= layers
        b = next(j.budget for j in joiners if j.peer_id == c.peer_id)
        assert c.end - c.start <= b.max_layers
    gaps = holes(layers, held)
    budgets = [j.budget.max_layers for j in joiners]
    need = sum(b - a for a, b in gaps) + max(0, len(gaps) - 1) * (max(budgets) - 1)
    if sum(budgets) >= need:
        assert not holes(layers, held + [c.range for c in got.values()])
    # a joiner never lands where it adds nothing while a hole is open that it could have reached first
    if gaps:  # the first in joint order (largest budget, then peer id) takes the first hole
        lead = min(joiners, key=lambda j: (-j.budget.max_layers, j.peer_id))
        assert got[lead.peer_id].start == gaps[0][0]


@settings(max_examples=300, deadline=None)
@given(networks())
def test_placement_from_an_empty_network_chains(net):
    layers, _, joiners = net
    got = place(Footprint.uniform(layers), [], joiners)
    ranges = [c.range for c in got.values()]
    if not holes(layers, ranges):
        assert chained(layers, ranges)


def test_healing_moves_one_redundant_worker_into_the_hole():
    fp = Footprint.uniform(30)
    b = Budget(max_layers=10)
    holders = [("a1", 0, 10), ("a2", 0, 10), ("c1", 20, 30), ("c2", 20, 30)]  # both 10:20 replicas died
    movers = [Mover(p, s, e, b) for p, s, e in holders]
    plan = heal(fp, holders, movers)
    assert list(plan) == ["a1"] and plan["a1"].range == (10, 20)
    healed = [(s, e) for p, s, e in holders if p != "a1"] + [plan["a1"].range]
    assert not holes(30, healed) and chained(30, healed)
    assert heal(fp, [(p, *plan[p].range) if p in plan else (p, s, e) for p, s, e in holders], movers) == {}


def test_healing_never_opens_a_new_hole():
    fp = Footprint.uniform(30)
    holders = [("a", 0, 10), ("c", 20, 30)]  # no replica to spare anywhere
    assert heal(fp, holders, [Mover("a", 0, 10, Budget(10)), Mover("c", 20, 30, Budget(10))]) == {}


@settings(max_examples=300, deadline=None)
@given(networks(), st.data())
def test_healing_is_stable(net, data):
    """The plan does not depend on the order of the view, uncovers no layer that was covered, and is a fixed
    point: once applied, nobody moves again (no oscillation)."""
    layers, held, joiners = net
    fp = Footprint.uniform(layers)
    holders = [(f"h{i:02d}", a, b) for i, (a, b) in enumerate(held)]
    movers = [Mover(p, a, b, Budget(max_layers=data.draw(st.integers(1, layers)))) for p, a, b in holders
              if data.draw(st.booleans())]
    plan = heal(fp, holders, movers)
    assert heal(fp, list(reversed(holders)), list(reversed(movers))) == plan
    after = [(p, *plan[p].range) if p in plan else (p, a, b) for p, a, b in holders]
    before_cov = replicas(layers, [(a, b) for _, a, b in holders])
    after_cov = replicas(layers, [(a, b) for _, a, b in after])
    assert all(after_cov[i] > 0 for i in range(layers) if before_cov[i] > 0)
    assert len(holes(layers, [(a, b) for _, a, b in after])) <= len(holes(layers, held)) or not plan
    moved = {p: Mover(p, *plan[p].range, m.budget) if p in plan else m for p, m in
             ((m.peer_id, m) for m in movers)}
    assert heal(fp, after, list(moved.values())) == {}  # a fixed point: applied, nobody moves again


def test_random_arrivals_reach_two_replicas_everywhere():
    rnd = random.Random(7)
    fp = Footprint.uniform(30, 14, 108, 108)
    for _ in range(20):
        held = []
        for k in rnd.sample(range(100), 6):
            held.append(choose(fp, held, Budget(max_layers=10), f"w{k}").range)
        assert min(replicas(30, held)) == 2 and chained(30, held)


# ---- ghosts: a worker not heard within node_timeout_s leaves routing and coverage at once; the persisted view
# expires it

def _entry(pid, start, end, last_seen, **kw):
    from gtracd.control.peerview import WorkerEntry

    return WorkerEntry(pid, f"/ip4/127.0.0.1/tcp/1/p2p/{pid}", start, end, 4, "m", last_seen=last_seen, **kw)


def test_a_ghost_leaves_routing_at_once_without_waiting_for_a_refresh():
    from gtracd.control.peerview import PeerView
    from gtracd.routing.coverage import coverage

    v = PeerView(model="m", depth=4)
    v.node_timeout_s = 30.0
    v.heard(_entry("a", 0, 4, 1000.0))
    v.heard(_entry("b", 0, 4, 1000.0, state="draining"))
    v.heard(_entry("c", 0, 0, 1000.0, state="joining"))
    snap = v.snapshot("m", now=1010.0)
    assert [(p.id, p.alive) for p in snap.peers] == [("a", True), ("b", False)]  # draining: no new sessions
    assert not v.snapshot("m", now=1031.0).by_id["a"].alive  # 31 s unheard: gone, though refresh never ran
    assert not coverage(v.snapshot("m", now=1031.0), 0.5).complete
    assert v.drained_since("b", 999.0) and not v.drained_since("a", 0.0)


def test_a_ghost_expires_from_the_persisted_view():
    from gtracd.control.peerview import PeerView

    now = 100_000.0
    doc = {"workers": [vars(_entry("live", 0, 4, now - 5)), vars(_entry("gone", 0, 4, now - 100)),
                       vars(_entry("ghost", 0, 4, now - 400)), {"peer_id": "bad"}, vars(_entry("old", 0, 4, 0.0))]}
    v = PeerView()
    redial = v.restore(doc, now, node_timeout_s=30.0, forget_after_s=300.0)
    assert set(v.workers) == {"live", "gone"}  # the ghost (400 s) is forgotten; malformed entries skipped
    assert v.workers["live"].alive and not v.workers["gone"].alive  # gone: shown as gone, not routed
    assert {e.peer_id for e in redial} == {"live", "gone"}
    v.heard(_entry("x", 0, 4, now + 100))
    assert v.expire(now + 350, 300.0) == ["live", "gone"] and set(v.workers) == {"x"}


# ---- the agent's re-check after announcing (driver logic over a view; no network)

class _Daemon:
    """The part of the worker daemon the agent drives: its lifecycle (a real one) and the announcement."""

    nudge = None

    def __init__(self):
        self.lifecycle = Lifecycle(LOADING)

    state = property(lambda self: self.lifecycle.state)
    target = property(lambda self: self.lifecycle.target)
    leaving = property(lambda self: self.lifecycle.leaving)

    def announce(self, changed: bool) -> bool:
        return changed


def _agent(me: str, view):
    from types import SimpleNamespace

    from gtracd.worker.agent import Agent

    s = SimpleNamespace(heartbeat_s=2.0, heal_after_s=0.0, trust_floor=0.5, move_window_s=600.0, drain_s=1.0)
    return Agent(_Daemon(), view, me, "m", Footprint.uniform(30), Budget(max_layers=10), s, None)


def test_recheck_moves_one_of_two_overlapping_loaders_and_only_while_a_hole_is_open():
    import time as _time

    from gtracd.control.peerview import PeerView, WorkerEntry
    from gtracd.membership.placement import Choice

    now = _time.monotonic()

    def view_with(*entries):
        v = PeerView(model="m", depth=30)
        for pid, a, b, state in entries:
            v.heard(WorkerEntry(pid, f"/p2p/{pid}", a, b, 30, "m", last_seen=now, state=state))
        return v

    v = view_with(("A", 0, 10, "loading"), ("B", 0, 10, "loading"), ("S", 10, 20, "serving"))
    again = _agent("A", v)._recheck(Choice("A", 0, 10, ""))
    assert again is not None and again.range == (20, 30)  # one of them (peer-id order) moves to the open hole
    assert _agent("B", v)._recheck(Choice("B", 0, 10, "")) is None  # the other keeps its range
    full = view_with(("A", 0, 10, "loading"), ("S", 10, 20, "serving"), ("T", 20, 30, "serving"))
    assert _agent("B", full)._recheck(Choice("B", 0, 10, "")) is None  # no hole: an extra replica is fine


def test_the_largest_budget_places_first_so_a_small_one_is_not_wasted_on_part_of_a_big_hole():
    fp = Footprint.uniform(6)
    got = place(fp, [(3, 5)], [Joiner("A", Budget(max_layers=1)), Joiner("B", Budget(max_layers=3))])
    assert got["B"].range == (0, 3) and got["A"].range == (5, 6)


# ---- attacks on the membership fields (an independent review's findings)

def _view_at(now, *entries):
    from gtracd.control.peerview import PeerView, WorkerEntry

    v = PeerView(model="m", depth=30)
    v.node_timeout_s = 30.0
    for pid, a, b, state, kw in entries:
        v.heard(WorkerEntry(pid, f"/p2p/{pid}", a, b, 30, "m", last_seen=now, state=state, **kw))
    return v


def test_announcing_draining_excuses_a_broken_stream_only_for_a_real_leave_or_move():
    from gtracd.control.peerview import WorkerEntry
    from gtracd.net.hop import HopFailed
    from gtracd.seeker.blame import verdict

    now = 10_000.0
    v = _view_at(now - 5, ("W", 0, 10, "serving", {}))
    v.heard(WorkerEntry("W", "/p2p/W", 0, 10, 30, "m", last_seen=now - 3, state="draining"))
    assert v.drained_since("W", now - 4, now)  # a leave: the session opened before the drain is excused
    assert not v.drained_since("W", now - 2, now)  # opened after it began to drain: no excuse
    broken, stalled = HopFailed("W", "stream closed (reset)"), HopFailed("W", "no answer to step within 2.0s", "timeout")
    assert not verdict(broken, True).blamed and verdict(stalled, True).blamed  # a timeout is blamed anyway
    v.heard(WorkerEntry("W", "/p2p/W", 0, 10, 30, "m", last_seen=now - 1, state="serving"))
    assert not v.drained_since("W", now - 4, now)  # back serving the same range: it never left
    v.heard(WorkerEntry("W", "/p2p/W", 10, 20, 30, "m", last_seen=now, state="serving"))
    assert v.drained_since("W", now - 4, now)  # it moved: the cut session is excused
    for k in range(3):  # draining again and again: no more excuses within the window
        v.heard(WorkerEntry("W", "/p2p/W", 10, 20, 30, "m", last_seen=now + k, state="draining"))
        v.heard(WorkerEntry("W", "/p2p/W", 20, 30, 30, "m", last_seen=now + k + 0.5, state="serving"))
    assert not v.drained_since("W", now - 4, now + 3)


def _serving_agent(view, me="M", rng=(0, 10)):
    ag = _agent(me, view)
    ag.daemon.lifecycle = Lifecycle(SERVING)
    ag.range = rng
    return ag


@pytest.mark.parametrize("fake", [("F", 0, 0, "joining", {}), ("F", 10, 20, "loading", {}),
                                  ("F", 0, 10, "draining", {"target": [10, 20]})])
def test_claims_of_peers_that_never_serve_delay_healing_but_never_block_it(fake):
    now = 50_000.0
    # M and S2 serve 0:10, T serves 20:30, 10:20 lost every replica; a fake claims it will cover it
    v = _view_at(now, ("S2", 0, 10, "serving", {"auto": True}), ("T", 20, 30, "serving", {}), fake)
    ag = _serving_agent(v, "A")  # "A" < "S2": the healing plan picks it among equals
    assert ag.heal_decision(now) is None  # the hole is new: hysteresis
    assert ag.heal_decision(now + ag.heal_after_s + 0.1) is None  # the claim is respected for a while...
    late = ag.heal_after_s + ag.claim_grace_s + 0.1
    for w in list(v.workers.values()):  # everyone keeps heartbeating (the fake too, with the same claim)
        w.last_seen = now + late
    c = ag.heal_decision(now + late)  # ...then ignored
    assert c is not None and c.range == (10, 20)


def test_honest_healing_moves_at_once_after_the_hysteresis():
    now = 50_000.0
    v = _view_at(now, ("S2", 0, 10, "serving", {"auto": True}), ("T", 20, 30, "serving", {}))
    ag = _serving_agent(v, "A")
    assert ag.heal_decision(now) is None
    assert ag.heal_decision(now + ag.heal_after_s + 0.1).range == (10, 20)
    ag.last_move = now + ag.heal_after_s + 0.1
    ag.hole_since = None
    assert ag.heal_decision(now + ag.heal_after_s + 1.0) is None  # one move per window


def test_many_fake_joiners_are_capped():
    from gtracd.worker.agent import MAX_JOINERS

    now = 50_000.0
    v = _view_at(now, *[(f"F{k:04d}", 0, 0, "joining", {}) for k in range(2000)])
    _, joiners, _, _, _ = _serving_agent(v).inputs(now)
    assert len(joiners) == MAX_JOINERS


def test_footprint_from_safetensors_headers(tmp_path):
    import json
    import struct

    from gtracd.engine.footprint import footprint

    cfg = {"model_type": "llama", "num_hidden_layers": 2, "tie_word_embeddings": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    hdr = {"model.embed_tokens.weight": {"dtype": "BF16", "shape": [100, 8], "data_offsets": [0, 0]},
           "model.layers.0.mlp.w": {"dtype": "BF16", "shape": [8, 8], "data_offsets": [0, 0]},
           "model.layers.1.mlp.w": {"dtype": "BF16", "shape": [8, 16], "data_offsets": [0, 0]},
           "model.norm.weight": {"dtype": "BF16", "shape": [8], "data_offsets": [0, 0]}}
    raw = json.dumps(hdr).encode()
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw)
    fp = footprint(tmp_path)  # float32 as shards load; the tied head: the last range reads the embeddings
    assert fp.layer_bytes == (8 * 8 * 4, 8 * 16 * 4) and fp.first_bytes == 800 * 4
    assert fp.last_bytes == 8 * 4 + 800 * 4 and fp.bytes(0, 2) == 256 + 512 + 3200 + 3232


def test_heartbeat_ranges_are_cross_checked():
    from gtracd.errors import DecodeError
    from gtracd.identity import Identity
    from gtracd.wire.envelope import encode_envelope

    base = {"network": "n", "model": "m", "addrs": [], "free_tokens": 0, "load": 0.0, "version": "1",
            "total_layers": 30}
    ok = [{"start": 0, "end": 0, "state": "joining"}, {"start": 0, "end": 10, "state": "loading"},
          {"start": 0, "end": 10, "state": "draining", "target": [10, 20]}, {"start": 20, "end": 30}]
    bad = [{"start": 0, "end": 10, "state": "joining"}, {"start": 0, "end": 0}, {"start": 5, "end": 40},
           {"start": 0, "end": 10, "state": "draining", "target": [20, 10]},
           {"start": 0, "end": 10, "target": [0, 31]}]
    ident = Identity.generate()
    for b in ok:
        encode_envelope(ident, "heartbeat", {**base, **b}, 1, 1.0)
    for b in bad:
        with pytest.raises(DecodeError):
            encode_envelope(ident, "heartbeat", {**base, **b}, 1, 1.0)


def test_a_peer_that_moved_may_replace_the_hop_it_healed_even_if_its_old_session_here_was_cut():
    from gtracd.control.peerview import PeerView, WorkerEntry
    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation

    v = PeerView(model="m", depth=30)
    for pid, a, b in (("A", 0, 10), ("B", 10, 20), ("M", 20, 30)):
        v.heard(WorkerEntry(pid, f"/p2p/{pid}", a, b, 30, "m", last_seen=1.0))
    g = Generation(None, v, Params())
    from gtracd.seeker.blame import Verdict

    g.accounts.hop_failed("M", (20, 30), Verdict("drained", False))  # M's session was cut by its drain
    g.accounts.hop_failed("X", (0, 10), Verdict("transport", True))  # X failed with blame
    assert {"M", "X"} <= g._excluded()
    v.heard(WorkerEntry("M", "/p2p/M", 10, 20, 30, "m", last_seen=2.0))  # M moved to heal 10:20
    assert "M" not in g._excluded() and "X" in g._excluded()
