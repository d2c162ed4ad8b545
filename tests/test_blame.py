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
    (HopError("p" * 10, "cancelled", "by you"), "seeker", False),
    (HopError("p" * 10, "too_long", "past max_length"), "seeker", False),
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
