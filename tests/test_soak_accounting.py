"""The soak's accounting of lost reports (gtracd/benchmarks/soak.py): pure, from the daemons' traces."""

from gtracd.benchmarks.soak import Traces, _missing


def _traces(emitted, have):
    t = Traces(None)
    t.emitted = emitted
    t.have = have
    return t


def test_a_report_every_anchor_holds_is_not_lost():
    t = _traces({("r", 1): (0.0, 100.0)}, {("r", 1): {"a1": 0.1, "a2": 0.2, "a3": 0.3}})
    assert _missing(t, {}) == []


def test_a_report_one_anchor_lacks_above_its_boundary_is_lost():
    t = _traces({("r", 1): (0.0, 100.0)}, {("r", 1): {"a1": 0.1, "a2": 0.2}})
    final = {a: {"boundary": 90.0} for a in ("a1", "a2", "a3")}
    assert _missing(t, final) == [("r", 1)]


def test_a_report_below_the_lacking_anchors_boundary_was_folded_if_another_held_it():
    t = _traces({("r", 1): (0.0, 100.0)}, {("r", 1): {"a1": 0.1}})
    final = {a: {"boundary": 150.0} for a in ("a1", "a2", "a3")}
    assert _missing(t, final) == []


def test_a_report_no_anchor_ever_held_is_lost_however_old():
    """A checkpoint folds held reports: one refused everywhere (below_checkpoint, say) was folded nowhere."""
    t = _traces({("r", 1): (0.0, 100.0), ("r", 2): (0.0, 101.0)}, {("r", 2): {"a1": 0.1}})
    final = {a: {"boundary": 150.0} for a in ("a1", "a2", "a3")}
    assert _missing(t, final) == [("r", 1)]
