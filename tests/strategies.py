"""Hypothesis strategies and report builders shared by the ledger, checkpoint and sync tests (one place)."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from gtracd.identity import Identity
from gtracd.ledger import Report, RuleParams

REPORTERS = [bytes([i]) * 32 for i in range(4)]
PEERS = [f"w{i}" for i in range(5)]


@st.composite
def reports(draw):
    outcome = draw(st.sampled_from(["success", "failure", "wrong_output"]))
    n = 3 if outcome == "wrong_output" else None
    chain = tuple(draw(st.lists(st.sampled_from(PEERS), min_size=n or 1, max_size=n or 3, unique=True)))
    culprit = {"success": -1, "wrong_output": 0}.get(outcome)
    if culprit is None:
        culprit = draw(st.integers(-1, len(chain) - 1))
    lats = tuple(draw(st.lists(st.floats(0, 5000), min_size=len(chain), max_size=len(chain))))
    evidence = tuple(bytes([i]) * 32 for i in range(4)) if outcome == "wrong_output" else ()
    return Report(draw(st.sampled_from(REPORTERS)), draw(st.integers(0, 20)), draw(st.floats(0, 20000)), chain, lats,
                  outcome, culprit, evidence=evidence)


# reporter standing switched on within the drawn time span (the defaults need a day of history)
STANDING = RuleParams(standing_age_s=2000.0, standing_reports=2, window_s=5000.0, newcomer_budget=0.02)


SETS = st.lists(reports(), max_size=25)
PROP = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))

ANCHOR = Identity.generate()


@st.composite
def epochs(draw):  # ledger epochs: anchor-signed priors that restart derivation
    priors = tuple(sorted((p, draw(st.floats(0, 1))) for p in draw(st.lists(st.sampled_from(PEERS), max_size=3,
                                                                            unique=True))))
    return Report(ANCHOR.public, draw(st.integers(100, 110)), draw(st.floats(0, 20000)), (), (), "epoch", -1,
                  epoch=draw(st.integers(1, 3)), priors=priors)


MIXED = st.lists(st.one_of(reports(), reports(), epochs()), max_size=25)


def R(rep, seq, chain, outcome="success", culprit=-1, lats=None, ts=None):
    return Report(REPORTERS[rep], seq, float(seq if ts is None else ts), tuple(chain),
                  tuple(lats or [100.0] * len(chain)), outcome, culprit)
