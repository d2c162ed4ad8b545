"""What a failed hop costs the worker (pure): the blame rules, decided by the seeker from the code (a closed
set, wire.kinds.ERROR_CODES), the timing and what the seeker itself knows.

A worker is blamed (a failure report naming it, -penalty) only for what it did wrong: no answer in time, a
broken stream, an error it caused, a model or range it announced but does not serve, an identity it cannot
prove, or wrong output caught by a spot check. It is never blamed for saying no in time before doing any
work (`busy` with a retry-after, `draining`), for a session cut while it announced draining, or for
dropping our session from its cache (`unknown_session`: evicted by budget or TTL, which the worker's
fair-share admission allows). What the seeker knows it did not cause is blamed: `too_long` (the seeker never
sends past the length the chain granted) and `cancelled` (it never calls a session it cancelled); so is a
`draining` answer to a prefill or step from a worker that never announced draining. A refusal that came only
after half the call's deadline is a timeout, whatever its code. Errors the seeker raises itself (`local`)
cost nobody. Unblamed failures are still routed around for the rest of the request: the seeker repairs the
hop like any other failure, and a `busy` worker is skipped until its retry-after passes. A hop that refuses its input as
`bad_tensor` blames the hop that produced it (the seeker also checks every hidden state's dtype and shape
before relaying it), so no worker can get its neighbour blamed.

A worker reached through a relay is not blamed for a broken or silent stream when the relay itself is gone
(`HopFailed.relay_lost`: the seeker could not open a fresh stream to the relay right after); a relay that
still answers leaves the blame with the worker, so a worker cannot shed blame by dropping its own circuit.

Known limit: a worker that always answers `busy` or `unknown_session` is never blamed, but it never earns a
success either (trust only rises through completed requests), so it only wastes its own slot in routing.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..net.hop import PROTOCOL, TIMEOUT, HopFailed

REFUSALS = ("busy", "draining")  # said no before doing any work
EVICTIONS = ("unknown_session",)  # our session left its cache (budget / TTL)
EXTEND = ("prefill", "step")
WRONG_OUTPUT = "wrong_output"


@dataclass(frozen=True)
class Verdict:
    kind: str  # refusal | eviction | seeker | timeout | transport | protocol | drained | relay | error | wrong_output
    blamed: bool
    retry_after_s: float | None = None


def verdict(err: BaseException, draining: bool = False) -> Verdict:
    """Classify a hop failure (HopError / HopFailed / a spot-check mismatch) into its blame verdict.
    `draining`: the worker announced draining since the session opened (a graceful leave or a move; see
    PeerView.drained_since): a session its drain bound cut (the stream broke) is repaired like any failure
    but not blamed. A timeout, an error or wrong output is blamed all the same."""
    if isinstance(err, HopFailed):  # the deadline passed, the transport broke, or the protocol was violated
        if getattr(err, "relay_lost", False) and err.reason != PROTOCOL:  # the relay died, not the worker
            return Verdict("relay", False)
        if err.reason == TIMEOUT:
            return Verdict("timeout", True)
        if draining:  # a session its drain bound cut: the stream broke, or its last frames came out garbled
            return Verdict("drained", False)
        return Verdict("protocol", True) if err.reason == PROTOCOL else Verdict("transport", True)
    code = getattr(err, "code", None)
    if getattr(err, "local", False):  # the seeker's own state said so: no worker spoke
        return Verdict("seeker", False)
    if getattr(err, "late", False) and code in REFUSALS + EVICTIONS:  # a no that came only after a stall
        return Verdict("timeout", True)
    if code == "draining" and getattr(err, "request", None) in EXTEND and not draining:
        return Verdict("error", True)  # cut our session while announcing it serves
    if code in REFUSALS:
        return Verdict("refusal", False, getattr(err, "retry_after_s", None))
    if code in EVICTIONS:
        return Verdict("eviction", False)
    if code == WRONG_OUTPUT:
        return Verdict("wrong_output", True)
    return Verdict("error", True)
