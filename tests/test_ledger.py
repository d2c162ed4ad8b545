import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtracd.identity import Identity
from gtracd.ledger import Ledger, Report, RuleParams, derive
from gtracd.wire.envelope import encode_envelope

REPORTERS = [bytes([i]) * 32 for i in range(4)]
PEERS = [f"w{i}" for i in range(5)]


@st.composite
def reports(draw):
    chain = tuple(draw(st.lists(st.sampled_from(PEERS), min_size=1, max_size=3, unique=True)))
    outcome = draw(st.sampled_from(["success", "failure"]))
    culprit = -1 if outcome == "success" else draw(st.integers(-1, len(chain) - 1))
    lats = tuple(draw(st.lists(st.floats(0, 5000), min_size=len(chain), max_size=len(chain))))
    return Report(draw(st.sampled_from(REPORTERS)), draw(st.integers(0, 20)), draw(st.floats(0, 20000)), chain, lats,
                  outcome, culprit)


SETS = st.lists(reports(), max_size=25)
PROP = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


@PROP
@given(SETS, SETS, SETS)
def test_merge_laws(a, b, c):
    A, B, C = Ledger(a), Ledger(b), Ledger(c)
    assert A.merge(B) == B.merge(A)
    assert A.merge(B).merge(C) == A.merge(B.merge(C))
    assert A.merge(A) == A
    assert A.merge(B).merge(B) == A.merge(B)


@PROP
@given(SETS, st.randoms(use_true_random=False), st.integers(1, 3))
def test_any_order_any_duplication_derives_identical_trust(rs, rnd, dup):
    ref = derive(Ledger(rs))
    shuffled = [r for r in rs for _ in range(dup)]
    rnd.shuffle(shuffled)
    got = derive(Ledger(shuffled))
    assert got == ref  # bit-identical floats, not approximately equal
    half = len(shuffled) // 2
    assert derive(Ledger(shuffled[:half]).merge(Ledger(shuffled[half:]))) == ref


@PROP
@given(SETS)
def test_trust_stays_in_unit_interval_and_one_reporter_is_bounded(rs):
    p = RuleParams(reporter_budget=0.25, window_s=1e9)
    trust, lat = derive(Ledger(rs), p)
    assert all(0.0 <= t <= 1.0 for t in trust.values())
    assert all(math.isfinite(v) for v in lat.values())
    for rep in REPORTERS:  # a single reporter alone moves any worker by at most its budget
        only = derive(Ledger([r for r in rs if r.reporter == rep]), p)[0]
        assert all(abs(t - p.initial_trust) <= 0.25 + 1e-12 for t in only.values())


def R(rep, seq, chain, outcome="success", culprit=-1, lats=None, ts=None):
    return Report(REPORTERS[rep], seq, float(seq if ts is None else ts), tuple(chain),
                  tuple(lats or [100.0] * len(chain)), outcome, culprit)


def test_paper_rules_worked_examples():
    p = RuleParams(initial_trust=0.9)
    t, _ = derive(Ledger([R(0, 1, ["a", "b"])]), p)
    assert math.isclose(t["a"], 0.93) and math.isclose(t["b"], 0.93)
    t, _ = derive(Ledger([R(0, 1, ["a", "b"], "failure", culprit=1)]), p)
    assert "a" not in t and math.isclose(t["b"], 0.70)
    t, _ = derive(Ledger([R(0, 1, ["a", "b"], "failure", culprit=-1)]), p)
    assert math.isclose(t["a"], 0.85) and math.isclose(t["b"], 0.85)
    t, _ = derive(Ledger([R(0, i, ["a"]) for i in range(10)]), p)
    assert t["a"] == 1.0  # capped
    t, _ = derive(Ledger([R(i % 4, i, ["a"], "failure", 0) for i in range(12)]), RuleParams(reporter_budget=1.0))
    assert t["a"] == 0.0  # floored


def test_latency_ewma():
    _, lat = derive(Ledger([R(0, 1, ["a"], lats=[100.0]), R(0, 2, ["a"], lats=[200.0])]))
    first = 0.7 * 250.0 + 0.3 * 100.0
    assert lat["a"] == 0.7 * first + 0.3 * 200.0


def test_slander_is_bounded_per_reporter_and_window():
    p = RuleParams(reporter_budget=0.5, window_s=3600)
    slander = [R(0, i, ["honest"], "failure", 0, ts=i) for i in range(50)]  # 50 x -0.20 from one seeker
    t, _ = derive(Ledger(slander), p)
    assert math.isclose(t["honest"], p.initial_trust - 0.5)
    later = slander + [R(0, 100, ["honest"], "failure", 0, ts=7200)]  # next window: budget again
    t2, _ = derive(Ledger(later), p)
    assert math.isclose(t2["honest"], p.initial_trust - 0.7)


def test_equivocation_resolves_the_same_everywhere():
    a = R(0, 1, ["a"])
    b = R(0, 1, ["a"], "failure", 0)
    x, y = Ledger([a]).merge(Ledger([b])), Ledger([b]).merge(Ledger([a]))
    assert x == y and len(x) == 1 and x.equivocations == 1


def test_anti_entropy_digest_finds_exactly_what_is_missing():
    full = Ledger([R(r, s, ["a"]) for r in range(3) for s in range(5)])
    part = Ledger([R(r, s, ["a"]) for r in range(3) for s in range(5) if (r, s) not in {(1, 2), (2, 4)}])
    missing = full.missing_for(part.digest(), {rep: part.seqs(rep) for rep in REPORTERS})
    assert {(m.reporter, m.seq) for m in missing} == {(REPORTERS[1], 2), (REPORTERS[2], 4)}
    assert part.merge(Ledger(missing)) == full
    assert full.missing_for(full.digest()) == []


def test_report_from_signed_envelope():
    ident = Identity.generate()
    env = encode_envelope(ident, "trust_report", dict(network="n", request_id=b"r" * 16, model="m", mode="g-trac",
                                                      chain=["a", "b"], latency_ms=[1.0, 2.0], outcome="success",
                                                      culprit=-1, tokens=3), seq=9, ts=100.0)
    r = Report.from_envelope(env)
    assert r.key == (ident.public, 9) and r.chain == ("a", "b") and r.raw == env.raw
