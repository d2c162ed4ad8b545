"""The lab's pure parts: profiles, plans (generator, loader errors), Wilson intervals, behaviours, layout,
and the identity binding proof virtual peers rely on."""

from __future__ import annotations

import random

import pytest

from gtracd.errors import UserError
from gtracd.lab.behaviour import Behaviour
from gtracd.lab.layout import groups, peer_identity
from gtracd.lab.plan import COLUMNS, PlanError, format_plan, generate_plan, parse_mix, parse_plan
from gtracd.lab.profiles import load_catalog
from gtracd.lab.stats import percentile, wilson

CAT = load_catalog()
HEADER = ",".join(COLUMNS)
OK_ROWS = ["p1,guaranteed_safe,P1,P,10.0.0.1,7000,0,8,4,0,1.0,50",
           "p2,risky_fast,P1,P,10.0.0.1,7000,9,17,1,0.25,0.5,1",
           "p3,safe_slow,R1,R,10.0.0.2,7001,0,17,8,0.001,0.99,200",
           "p4,normal,D1,D,10.0.0.3,7002,18,35,2,0.017,0.85,3"]


def plan_text(rows=OK_ROWS, header=HEADER):
    return "\n".join([header, *rows]) + "\n"


def test_profiles_reproduce_the_reference_ranges():
    assert set(CAT.profiles) >= {"golden", "honey_pot", "turtle", "normal", "byzantine", "crash", "flapping",
                                 "degrading"}
    assert CAT.profile("guaranteed_safe").name == "golden" and CAT.profile("risky_fast").name == "honey_pot"
    assert CAT.profile("safe_slow").ranges["net_delay_ms"] == (168.0, 329.0)
    assert CAT.profiles["honey_pot"].ranges["fail_rate"] == (0.20, 0.35)
    assert CAT.profiles["normal"].ranges_for("S")["trust0"] == (0.56, 0.65)
    assert {h.name for h in CAT.hosts.values()} == {"server", "legacy server", "desktop", "laptop", "phone"}


def test_reference_style_plan_loads_with_inclusive_layer_end():
    plan = parse_plan(plan_text(), CAT)
    assert plan.layers == 36 and len(plan.rows) == 4
    p1 = plan.by_id()["p1"]
    assert (p1.start, p1.end) == (0, 9)  # layer_end 8 is inclusive
    assert plan.ranges() == [(0, 9), (0, 18), (9, 18), (18, 36)]


BAD = [
    ("uncovered", [OK_ROWS[0], OK_ROWS[3]], "columns layer_start/layer_end: layers 9..17 are hosted by no peer"),
    ("unknown template", OK_ROWS + ["p5,dragon,P1,P,10.0.0.1,7000,0,8,1,0,1,1"], "row 6, column template"),
    ("rate out of range", OK_ROWS + ["p5,normal,P1,P,10.0.0.1,7000,0,8,1,1.5,1,1"], "row 6, column fail_rate"),
    ("trust out of range", OK_ROWS + ["p5,normal,P1,P,10.0.0.1,7000,0,8,1,0.1,-0.2,1"], "row 6, column trust0"),
    ("duplicate peer", OK_ROWS + ["p2,normal,P1,P,10.0.0.1,7000,0,8,1,0.1,0.9,1"], "row 6, column peer_id"),
    ("duplicate port", OK_ROWS + ["p5,normal,R2,R,10.0.0.1,7000,0,8,1,0.1,0.9,1"], "row 6, column port"),
    ("malformed row", OK_ROWS + ["p5,normal,P1"], "row 6: 3 cells"),
    ("not a number", OK_ROWS + ["p5,normal,P1,P,10.0.0.1,7000,zero,8,1,0.1,0.9,1"], "row 6, column layer_start"),
    ("end before start", OK_ROWS + ["p5,normal,P1,P,10.0.0.1,7000,9,3,1,0.1,0.9,1"], "row 6, column layer_end"),
    ("unknown host type", OK_ROWS + ["p5,normal,P1,Q,10.0.0.1,7000,0,8,1,0.1,0.9,1"], "row 6, column host_type"),
]


@pytest.mark.parametrize("name,rows,msg", BAD, ids=[b[0] for b in BAD])
def test_bad_plans_are_refused_with_one_line_naming_row_and_column(name, rows, msg):
    import re

    with pytest.raises(PlanError) as e:
        parse_plan(plan_text(rows), CAT, "plan.csv")
    text = str(e.value)
    assert "\n" not in text and re.search(msg, text), text


def test_bad_headers():
    with pytest.raises(PlanError, match="missing column"):
        parse_plan(plan_text(header=HEADER.replace(",trust0", "")), CAT)
    with pytest.raises(PlanError, match="column colour: unknown column"):
        parse_plan(plan_text([r + ",red" for r in OK_ROWS], HEADER + ",colour"), CAT)
    with pytest.raises(PlanError, match="empty file"):
        parse_plan("", CAT)


def test_extra_columns_for_the_new_profiles_round_trip():
    rows = [r + ",," for r in OK_ROWS] + ["p5,byzantine,P1,P,10.0.0.1,7000,0,8,1,0,0.98,2,0.3,"]
    plan = parse_plan(plan_text(rows, HEADER + ",byzantine_rate,crash_after_requests"), CAT)
    assert plan.by_id()["p5"].extra == {"byzantine_rate": 0.3}
    again = parse_plan(format_plan(plan), CAT)
    assert [r.__dict__ for r in again.rows] == [r.__dict__ for r in plan.rows]


def test_generator_is_deterministic_per_seed_and_valid():
    mix = parse_mix("golden=0.12,honey_pot=0.35,turtle=0.2,normal=0.33", CAT)
    a = format_plan(generate_plan(CAT, 112, 36, [3], mix, seed=7))
    b = format_plan(generate_plan(CAT, 112, 36, [3], mix, seed=7))
    c = format_plan(generate_plan(CAT, 112, 36, [3], mix, seed=8))
    assert a == b and a != c
    plan = parse_plan(a, CAT)  # what the generator writes, the loader takes
    assert len(plan.rows) == 112 and plan.layers == 36
    for seg in plan.ranges():  # a golden replica on every span
        assert any(r.template == "guaranteed_safe" and (r.start, r.end) == seg for r in plan.rows)
    for r in plan.rows:
        prof = CAT.profile(r.template)
        lo, hi = prof.ranges_for(r.host_type)["fail_rate"]
        assert lo - 1e-4 <= r.fail_rate <= hi + 1e-4
    with pytest.raises(UserError, match="golden peers for 22 segments"):
        generate_plan(CAT, 112, 36, [3, 6, 9], mix, 1)  # one golden per span needs more golden weight
    with pytest.raises(UserError, match="does not divide"):
        generate_plan(CAT, 30, 36, [5], mix, 1)
    with pytest.raises(UserError, match="unknown profile"):
        parse_mix("golden=1,unicorn=2", CAT)


def test_wilson_intervals_against_known_values():
    lo, hi = wilson(81, 263)  # Newcombe (1998), example: 0.2553 - 0.3662
    assert (round(lo, 4), round(hi, 4)) == (0.2553, 0.3662)
    assert tuple(round(x, 4) for x in wilson(8, 10)) == (0.4902, 0.9433)
    assert wilson(0, 10)[0] == 0.0 and round(wilson(0, 10)[1], 4) == 0.2775
    assert round(wilson(100, 100)[0], 4) == 0.9630 and wilson(100, 100)[1] == 1.0
    assert percentile([1, 2, 3, 4], 50) == 2.5 and percentile([], 50) is None


def _row(**kw):
    plan = parse_plan(plan_text(), CAT)
    r = plan.by_id()["p1"]
    for k, v in kw.items():
        if k in ("fail_rate", "net_delay_ms"):
            setattr(r, k, v)
        else:
            r.extra[k] = v
    return r


def test_behaviours():
    rng = random.Random(1)
    b = Behaviour(_row(fail_rate=0.0, net_delay_ms=100), 0.1, 1.0, 0.05, 0.0, rng, compute_ms_per_layer=10)
    a = b.decide("step", 1.0)
    assert not a.stall and not a.gone and a.delay_s == pytest.approx((100 + 9 * 10) * 0.1 / 1e3)
    stalls = Behaviour(_row(fail_rate=0.3), 1.0, 1.0, 0.05, 0.0, random.Random(2))
    n = sum(stalls.decide("step", 0.0).stall for _ in range(2000))
    assert 500 < n < 700
    liar = Behaviour(_row(byzantine_rate=1.0), 1.0, 1.0, 0.05, 0.0, rng, corrupt=lambda res: None)
    assert liar.decide("step", 0.0).corrupt is not None
    crash = Behaviour(_row(crash_after_requests=2), 1.0, 1.0, 0.05, 0.0, rng)
    crash.opened()
    assert crash.alive(0.0)
    crash.opened()  # the 2nd session is served to the end; then the peer is gone (no heartbeat, no new session)
    assert not crash.alive(0.0) and not crash.decide("step", 0.0).gone
    timed = Behaviour(_row(crash_at_s=10.0), 0.5, 1.0, 0.05, 0.0, rng)
    assert timed.alive(4.9) and timed.decide("step", 5.1).gone and not timed.alive(5.2)
    flap = Behaviour(_row(flap_period_s=10.0, flap_down_s=4.0), 0.5, 1.0, 0.05, 0.0, rng)
    assert flap.alive(2.0) and not flap.alive(3.5) and flap.alive(5.5)  # period 5 s, down 2 s at scale 0.5
    grow = Behaviour(_row(net_delay_ms=10, delay_growth_per_min=1.0), 1.0, 1.0, 0.05, 0.0, rng)
    assert grow.delay_ms(0.0) == 10 and grow.delay_ms(120.0) == 30


def test_layout_keeps_reference_processes_together_and_identities_stable():
    mix = parse_mix("golden=0.2,honey_pot=0.4,normal=0.4", CAT)
    plan = generate_plan(CAT, 60, 36, [9], mix, seed=3)
    gs = groups(plan, 3)
    assert sum(len(g) for g in gs) == 60 and len(gs) == 3
    where = {r.process_key: i for i, g in enumerate(gs) for r in g}
    assert all(where[r.process_key] == i for i, g in enumerate(gs) for r in g)
    assert peer_identity("s", "p1").peer_id == peer_identity("s", "p1").peer_id != peer_identity("t", "p1").peer_id


def test_binding_proof():
    from gtracd.identity import Identity, public_from_peer_id
    from gtracd.wire.binding import binding_ok, sign_binding

    me, other = Identity.generate(), Identity.generate()
    assert public_from_peer_id(me.peer_id) == me.public and public_from_peer_id("not-an-id") is None
    nonce, sid = b"n" * 16, b"s" * 16
    proof = sign_binding(me, "HOST", nonce, sid)
    assert binding_ok(me.peer_id, "HOST", nonce, sid, proof)
    assert not binding_ok(me.peer_id, "ELSEWHERE", nonce, sid, proof)  # another host: not bound there
    assert not binding_ok(me.peer_id, "HOST", b"m" * 16, sid, proof)  # a replayed proof
    assert not binding_ok(other.peer_id, "HOST", nonce, sid, proof)  # another identity's claim
    assert not binding_ok(me.peer_id, "HOST", nonce, sid, None)


# --- Lab II, item 1: the reference's published plans load unchanged --------------------------------------------
# its exact shape: host-prefixed templates, a VPN's 100.x addresses, several peer ids behind one ip:port, and one
# ip:port (100.64.0.1:6011) serving two different layer ranges
REF_ROWS = ["w00000_3,P_guaranteed_safe,P1,P,100.125.8.57,6011,0,2,1,0.0,1.0,24",
            "w00001_3,P_normal,P1,P,100.125.8.57,6011,0,2,1,0.0068,0.9803,1",
            "w00004_3,P_risky_fast,P1,P,100.125.8.57,6010,0,2,1,0.2153,0.5263,1",
            "w00008_3,R_safe_slow,R2,R,100.117.250.58,6011,3,5,4,0.001,0.9934,257",
            "w00009_3,P_normal,P1,P,100.125.8.57,6011,3,5,2,0.0014,0.9126,2",
            "w00010_3,S_normal,S1,S,100.98.255.118,6020,0,5,2,0.1,0.6,50",
            "w00011_3,L_risky_fast,L1,L,100.102.150.87,6010,3,5,1,0.3,0.5,1"]


def test_the_reference_format_loads_prefixed_templates_shared_processes_and_vpn_addresses():
    plan = parse_plan(plan_text(REF_ROWS), CAT, "deployment_plan_3l.csv")
    assert plan.layers == 6 and len(plan.rows) == 7
    assert CAT.profile("guaranteed_safe") is not None and plan.by_id()["w00000_3"].template == "P_guaranteed_safe"
    shared = [r for r in plan.rows if r.process_key == ("100.125.8.57", 6011)]
    assert {(r.start, r.end) for r in shared} == {(0, 3), (3, 6)}  # one process, two ranges
    assert plan.addresses() == ["100.102.150.87", "100.117.250.58", "100.125.8.57", "100.98.255.118"]
    assert plan.processes() == 5
    g = groups(plan, 2)
    assert all(sum(r.process_key == ("100.125.8.57", 6011) for r in part) in (0, 3) for part in g)


def test_the_three_published_plans_load_together():
    from pathlib import Path

    from gtracd.lab.plan import load_plans, plan_paths

    here = Path(__file__).parents[1] / "docs" / "experiments" / "plans" / "reference"
    paths = plan_paths([f"{here}/deployment_plan_3l.csv,{here}/deployment_plan_6l.csv",
                        str(here / "deployment_plan_9l.csv")])
    plan = load_plans(paths, CAT)
    assert len(plan.rows) == 336 and plan.layers == 36 and len(plan.ranges()) == 22
    assert {r.template.split("_", 1)[0] == r.host_type for r in plan.rows} == {True}


REF_BAD = [
    ("prefix disagrees", REF_ROWS + ["w9,R_normal,P1,P,100.125.8.57,6011,0,2,1,0.0,1.0,24"],
     r"deployment_plan_3l.csv row 9, column template: template 'R_normal' names host type R, but the row's "
     r"host_type is 'P'"),
    ("unknown prefixed template", REF_ROWS + ["w9,P_dragon,P1,P,100.125.8.57,6011,0,2,1,0.0,1.0,24"],
     r"row 9, column template: unknown template 'P_dragon'"),
    ("unknown prefix", REF_ROWS + ["w9,Q_normal,P1,P,100.125.8.57,6011,0,2,1,0.0,1.0,24"],
     r"row 9, column template: unknown template 'Q_normal'"),
]


@pytest.mark.parametrize("name,rows,msg", REF_BAD, ids=[b[0] for b in REF_BAD])
def test_reference_format_refusals(name, rows, msg):
    import re

    with pytest.raises(PlanError) as e:
        parse_plan(plan_text(rows), CAT, "deployment_plan_3l.csv")
    assert "\n" not in str(e.value) and re.search(msg, str(e.value)), str(e.value)


def test_several_plans_merge_and_collisions_are_refused_naming_both_files(tmp_path):
    from gtracd.lab.plan import load_plans, plan_paths

    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(plan_text(REF_ROWS))
    b.write_text(plan_text([r.replace("_3,", "_6,", 1) for r in REF_ROWS]))
    plan = load_plans(plan_paths([f"{a},{b}"]), CAT)
    assert len(plan.rows) == 14 and plan.layers == 6
    assert plan_paths([str(a), f"{b},{a}"]) == [a, b]  # repeated and comma lists, each file once
    b.write_text(plan_text([REF_ROWS[0].replace("w00000_3", "x1"), REF_ROWS[3]]))
    with pytest.raises(PlanError, match=r"b.csv row 3, column peer_id: peer id 'w00008_3' collides with a.csv row 5"):
        load_plans([a, b], CAT)
    b.write_text(plan_text(["y1,P_normal,P9,P,100.125.8.57,6011,0,5,1,0,0.9,1"]))
    with pytest.raises(PlanError, match=r"b.csv row 2, column port: 100.125.8.57:6011 is host P9 here but host P1"):
        load_plans([a, b], CAT)
    b.write_text(plan_text(["y1,P_normal,P1,P,100.125.8.57,6011,0,8,1,0,0.9,1"]))
    with pytest.raises(PlanError, match=r"different model depths: a.csv 6 layers, b.csv 9 layers"):
        load_plans([a, b], CAT)
