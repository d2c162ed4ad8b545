"""Checkpoints of the trust ledger (pure): old reports folded into their derived state, so replicas stay
bounded while every replica still derives bit-identical trust.

A checkpoint at `boundary` B stands for the set of reports with ts < B: it holds that set's digest and the
fold state right after applying exactly those reports in the total order (trust, latency EWMAs, reporter
budgets of windows that can still be touched, reporter standing, the epoch). Reports sort by ts first, so
folding the checkpoint's state and then the reports with ts >= B gives the same floats, bit for bit, as
folding every report from scratch (hypothesis-tested in tests/test_checkpoint.py).

A checkpoint is *certified* once a quorum of the keyring's anchors signed the same (boundary, digest,
state hash); only then may a replica prune the reports below its boundary (Ledger.adopt). The ledger state
becomes (checkpoint, reports at or above its boundary) and stays a CRDT: merge takes the later checkpoint
and the union of reports at or above it (see Ledger.merge). Reports below an adopted checkpoint are refused.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
from dataclasses import dataclass

from ..errors import DecodeError
from ..wire.codec import packb, unpackb
from .crdt import Fold, RuleParams
from .sync import runs_union, to_runs

STATE_MAX = 256 << 20  # bytes of a checkpoint state we decode


def set_digest(reports) -> bytes:
    """sha256 over the reports' keys and content digests, in key order: equal sets <=> equal digests."""
    h = hashlib.sha256()
    for r in sorted(reports, key=lambda r: r.key):
        h.update(r.reporter + r.seq.to_bytes(8, "big") + r.digest)
    return h.digest()


def fold_state(f: Fold, boundary: float, folded: dict[bytes, list[list[int]]]) -> bytes:
    """The fold's state as canonical bytes, with the seqs folded per reporter (as runs). Budgets of windows
    that ended before the boundary are left out: no report at or after it can touch them."""
    first_window = int(boundary // f.p.window_s)
    return packb({
        "v": 1, "boundary": boundary, "folded": sorted(folded.items()), "applied": f.applied, "epoch": f.epoch,
        "last": None if f.last is None else [f.last[0], f.last[1], f.last[2]],
        "any_established": f.any_established,
        "trust": sorted(f.trust.items()), "latency": sorted(f.latency.items()),
        "spent": sorted([rep, peer, w, v] for (rep, peer, w), v in f.spent.items() if w >= first_window),
        "newcomer_spent": sorted(f.newcomer_spent.items()),
        "first": sorted(f.first.items()), "corroborated": sorted(f.corroborated.items()),
        "recent": sorted([peer, sorted([rep, ts, ok] for rep, (ts, ok) in seen.items())]
                         for peer, seen in f.recent.items()),
    })


def _f(x) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise DecodeError("checkpoint state: a number is malformed", "state")
    return float(x)


def fold_from_state(data: bytes, p: RuleParams) -> Fold:
    """A Fold to continue from (DecodeError on anything malformed: the state is checked against its certified
    hash before it gets here, so this guards our own bugs and disk corruption)."""
    d = unpackb(data, STATE_MAX)
    try:
        if not isinstance(d, dict) or d.get("v") != 1:
            raise DecodeError("checkpoint state: unknown version", "state.v")
        f = Fold(p)
        f.applied, f.epoch, f.any_established = int(d["applied"]), int(d["epoch"]), bool(d["any_established"])
        f.last = None if d["last"] is None else (_f(d["last"][0]), bytes(d["last"][1]), int(d["last"][2]))
        f.trust = {str(k): _f(v) for k, v in d["trust"]}
        f.latency = {str(k): _f(v) for k, v in d["latency"]}
        f.spent = {(bytes(rep), str(peer), int(w)): _f(v) for rep, peer, w, v in d["spent"]}
        f.newcomer_spent = {str(k): _f(v) for k, v in d["newcomer_spent"]}
        f.first = {bytes(k): _f(v) for k, v in d["first"]}
        f.corroborated = {bytes(k): int(v) for k, v in d["corroborated"]}
        f.recent = {str(peer): {bytes(rep): (_f(ts), bool(ok)) for rep, ts, ok in seen} for peer, seen in d["recent"]}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DecodeError(f"checkpoint state: malformed ({type(e).__name__})", "state") from None
    return f


@dataclass(frozen=True)
class Checkpoint:
    boundary: float  # reports with ts < boundary are folded into `state`
    digest: bytes  # set_digest of every report ever folded (below the boundary)
    count: int  # how many
    state: bytes  # fold_state at the boundary

    @property
    def state_hash(self) -> bytes:
        return hashlib.sha256(self.state).digest()

    @functools.cached_property
    def folded(self) -> dict[bytes, list[list[int]]]:
        """Per reporter, the seqs folded, as runs [a, b) (one run for a reporter counting up)."""
        d = unpackb(self.state, STATE_MAX)
        try:
            return {bytes(k): [[int(a), int(b)] for a, b in v] for k, v in d["folded"]}
        except (KeyError, TypeError, ValueError) as e:
            raise DecodeError(f"checkpoint state: malformed folded seqs ({type(e).__name__})", "state") from None

    def covers(self, r) -> bool:
        """Is this report decided by the checkpoint: below its boundary, or a key it folded (an equivocating
        twin of a folded report, with a later ts, must not be folded a second time)?"""
        if r.ts < self.boundary:
            return True
        runs = self.folded.get(r.reporter)
        if not runs:
            return False
        i = bisect.bisect_right(runs, [r.seq, float("inf")]) - 1
        return i >= 0 and runs[i][0] <= r.seq < runs[i][1]

    @property
    def id(self) -> tuple[float, bytes, bytes]:
        """What anchors sign: (boundary, digest, state hash)."""
        return (self.boundary, self.digest, self.state_hash)

    def fold(self, p: RuleParams) -> Fold:
        return fold_from_state(self.state, p)


def later(a: Checkpoint | None, b: Checkpoint | None) -> Checkpoint | None:
    """The checkpoint a merge keeps: the later boundary; at one boundary (two quorums cannot honestly
    disagree) the smaller id, so every replica picks the same one."""
    if a is None or b is None:
        return a or b
    return min(a, b, key=lambda c: (-c.boundary, c.digest, c.state_hash))


def make_checkpoint(prev: Checkpoint | None, reports, boundary: float, p: RuleParams) -> Checkpoint:
    """Fold reports (a Ledger's, or any iterable: duplicates and equivocations are resolved as the ledger
    resolves them) with prev.boundary <= ts < boundary into a checkpoint at `boundary`, continuing from
    `prev` (whose boundary must not be later)."""
    from .crdt import Ledger

    if prev is not None and prev.boundary > boundary:
        raise ValueError("a checkpoint cannot move back")
    held = reports if isinstance(reports, Ledger) and reports.checkpoint == prev else Ledger(
        reports.reports() if isinstance(reports, Ledger) else reports, checkpoint=prev)
    below = [r for r in held.reports() if r.ts < boundary]  # in the fold's total order already
    f = prev.fold(p) if prev is not None else Fold(p)
    seqs: dict[bytes, set[int]] = {}
    for r in below:
        f.apply(r)
        seqs.setdefault(r.reporter, set()).add(r.seq)
    folded = dict(prev.folded) if prev is not None else {}
    for rep, new in seqs.items():
        folded[rep] = runs_union(folded.get(rep, []), to_runs(sorted(new)))
    digest = _chain(prev.digest if prev is not None else b"", set_digest(below))
    return Checkpoint(boundary, digest, (prev.count if prev is not None else 0) + len(below),
                      fold_state(f, boundary, folded))


def _chain(prev: bytes, new: bytes) -> bytes:
    """The digest of everything folded: the previous checkpoint's digest chained with this slice's."""
    return new if not prev else hashlib.sha256(prev + new).digest()


def boundary_for(now: float, period_s: float, lag_s: float) -> float:
    """The checkpoint boundary due at `now`: the last multiple of period_s at least lag_s in the past (lag_s
    covers the slander window and how old a report may be when admitted, so no honest report can still
    arrive below it)."""
    return math.floor((now - lag_s) / period_s) * period_s
