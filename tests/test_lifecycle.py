"""The worker lifecycle (worker/lifecycle.py) under arbitrary event sequences: only `serving` takes sessions, a
leave is final, and a driver's impossible event is refused loudly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gtracd.worker.lifecycle import DRAINING, LOADING, SERVING, STATES, Lifecycle, LifecycleError

EVENTS = st.lists(st.sampled_from(["join", "placed", "drained", "loaded", "move", "stay", "leave"]), max_size=30)
ALLOWED = {"join": (SERVING, "joining"), "placed": ("joining", LOADING), "drained": (DRAINING,),
           "loaded": (LOADING,), "move": (SERVING,), "stay": (DRAINING,)}


@given(events=EVENTS, start=st.sampled_from([SERVING, "joining"]))
def test_any_event_sequence(events, start):
    lc = Lifecycle(start)
    for ev in events:
        before = (lc.state, lc.target, lc.leaving)
        if ev == "leave":
            lc.leave()
            assert (lc.state, lc.target, lc.leaving) == (DRAINING, None, True)
            continue
        if lc.leaving:  # a leave overrides every later event: nothing changes
            assert getattr(lc, ev)(*([(0, 1)] if ev == "move" else [])) is False
            assert (lc.state, lc.target, lc.leaving) == before
            continue
        if lc.state not in ALLOWED[ev]:
            with pytest.raises(LifecycleError):
                getattr(lc, ev)(*([(0, 1)] if ev == "move" else []))
            assert (lc.state, lc.target, lc.leaving) == before
            continue
        assert getattr(lc, ev)(*([(3, 7)] if ev == "move" else [])) is True
        assert lc.state in STATES
        assert (lc.target == (3, 7)) == (ev == "move")  # only a move's drain has a target
        assert (lc.refusal() is None) == (lc.state == SERVING) == lc.serving


def test_a_move_and_a_leave_as_the_daemon_lives_them():
    lc = Lifecycle()
    assert lc.move((10, 20)) and lc.refusal() == "this worker takes no new sessions (draining)"
    assert lc.drained() and lc.refusal() == "this worker is not serving yet (loading)"
    assert lc.loaded() and lc.serving
    assert lc.move((0, 10)) and lc.leave() and lc.target is None  # a leave overrides the move in progress
    assert not lc.loaded() and lc.state == DRAINING
