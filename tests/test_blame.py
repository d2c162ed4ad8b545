"""Blame rules (seeker/blame.py): what a failed hop costs a worker (pure)."""

from __future__ import annotations

import pytest

from gtracd.net.hop import HopError, HopFailed
from gtracd.seeker.blame import verdict


@pytest.mark.parametrize("err, kind, blamed", [
    (HopError("p" * 10, "busy", "full", 2.0), "refusal", False),
    (HopError("p" * 10, "draining", "leaving"), "refusal", False),
    (HopError("p" * 10, "unknown_session", "evicted"), "eviction", False),
    # Trust II, item 10: a refusal or an eviction that comes only after most of the deadline is a stall
    (HopError("p" * 10, "unknown_session", "evicted", late=True), "timeout", True),
    (HopError("p" * 10, "busy", "full", 2.0, late=True), "timeout", True),
    (HopError("p" * 10, "draining", "leaving", late=True), "timeout", True),
    # Trust II, item 10: what the seeker knows it did not cause is the worker's doing
    (HopError("p" * 10, "cancelled", "by you"), "error", True),
    (HopError("p" * 10, "too_long", "past max_length"), "error", True),
    (HopError("p" * 10, "draining", "cut", request="step"), "error", True),  # never announced a drain
    (HopError("p" * 10, "draining", "leaving", request="open"), "refusal", False),
    (HopError("p" * 10, "unknown_session", "stream replaced", request="step", local=True), "seeker", False),
    (HopFailed("p" * 10, "no answer to step within 2.0s", "timeout"), "timeout", True),
    (HopFailed("p" * 10, "sent a malformed frame", "protocol"), "protocol", True),
    (HopFailed("p" * 10, "a message that says timed out, but is a transport failure"), "transport", True),
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


def test_a_drain_that_cuts_a_session_is_excused_only_when_announced():
    cut = HopError("p" * 10, "draining", "cut", request="prefill")
    assert verdict(cut, draining=True).blamed is False and verdict(cut).blamed is True


def test_error_codes_are_a_closed_set_on_the_wire():
    """A worker cannot invent a code to choose its own blame: the frame does not decode (a protocol failure)."""
    from gtracd.errors import DecodeError
    from gtracd.wire.frames import decode_frame, encode_frame
    from gtracd.wire.kinds import ERROR_CODES

    assert decode_frame(encode_frame("error", {"code": "busy", "message": "x"}))[1]["code"] == "busy"
    for code in ("please_dont_blame_me", "Busy", ""):
        assert code not in ERROR_CODES
        with pytest.raises(DecodeError):
            decode_frame(encode_frame("error", {"code": code, "message": "x"}, check=False))
