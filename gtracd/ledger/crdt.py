"""State-based CRDT ledger.

State: a grow-only map (reporter public key, seq) -> Report. Merge is the union (commutative, associative,
idempotent). A reporter that equivocates (two different reports under one key) is resolved
deterministically: the report with the smaller content digest wins on every replica.

Trust and latency are never stored: `derive` folds the reports in a total order (ts, reporter, seq), so every
replica holding the same set computes bit-identical floats.

Rules (the paper's, asymmetric and additive): success -> every chain peer +reward (cap 1); failure with a
known culprit -> that peer -penalty (floor 0); culprit unknown -> every hop -unknown_penalty; a spot check's
`wrong_output` (chain = accused, witness, arbiter) -> the accused -wrong_output_penalty. Slander (and
ballot-stuffing) resistance: one reporter moves one worker by at most `reporter_budget` in absolute value per
window of `window_s` seconds; what exceeds the budget is dropped.

Reporter standing (sybil resistance, docs/decisions.md): a reporter is *established* once its first folded
report is `standing_age_s` old and `standing_reports` of its reports were corroborated (another reporter
reported the same outcome class on the same worker within `window_s` before it). Once any reporter is
established, all reports from non-established reporters together move each worker by at most
`newcomer_budget` (absolute, cumulative over the epoch): K fresh identities, however many, cannot move any
worker by more, in either direction. Before anyone is established (a new network) the paper's rules apply
unchanged. Standing survives ledger epochs (they reset trust, not who the reporters are). All of it is state
of the same fold, updated in the same total order. Latency: EWMA with weight alpha over the
seeker-measured hop latencies, starting at latency0_ms. Initial trust comes from configuration.

Epochs: a `ledger_epoch` record (signed by a keyring anchor, e.g. an experiment's operator) is held in the
same set, keyed by its signer and seq, and folds in the same total order: an epoch above the current one
restarts derivation at its timestamp (trust back to the priors it carries or initial_trust, latency back to
latency0_ms, reporter budgets cleared); a record of the current epoch adds its priors (long prior lists are
split). Reports older than the epoch stay in the set (it is grow-only) but no longer count. Replicas holding
the same records still derive bit-identical numbers: it is one more step of the same deterministic fold.
"""

from __future__ import annotations

import hashlib

from .checkpoint import STATE_MAX, Checkpoint, fold_state, later, set_digest
from .report import Report
from .report import order as _order
from .report import unhex as _unhex
from .rules import Fold, RuleParams


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(16, "big")


def _head_item(r: Report) -> bytes:
    return hashlib.sha256(r.seq.to_bytes(8, "big") + r.digest).digest()[:16]


class Ledger:
    """The replicated state. Indexed per reporter; each reporter's head (count, XOR of item hashes) is kept
    incrementally, so an anti-entropy digest costs O(reporters), not O(reports)."""

    def __init__(self, reports=(), checkpoint=None):
        self._by: dict[bytes, dict[int, Report]] = {}
        self._heads: dict[bytes, tuple[int, bytes]] = {}
        self._n = 0
        self.equivocations = 0
        self.checkpoint = None  # the adopted (certified) ledger.checkpoint.Checkpoint: reports below it are folded
        self.below_checkpoint = 0  # reports refused because an adopted checkpoint already folded their time
        self._log: list[Report] = []  # state changes not yet taken by the derivation (take_log)
        self.rewrites = 0  # equivocation replacements and checkpoint adoptions: derivation must start over
        if checkpoint is not None:
            self.adopt(checkpoint)
        for r in reports:
            self.add(r)

    def take_log(self) -> list[Report]:
        """The state changes since the last call, in the order applied (one consumer: Derived)."""
        out, self._log = self._log, []
        return out

    def adopt(self, cp) -> bool:
        """Adopt a certified checkpoint if it is later than ours: prune every report below its boundary.
        True if the state changed."""

        if cp is None or later(self.checkpoint, cp) is not cp or cp == self.checkpoint:
            return False
        _ = cp.upto  # decoded before anything changes: a malformed state raises here, the ledger stays as it was
        self.checkpoint = cp
        for rep in list(self._by):
            per = self._by[rep]
            gone = [s for s, r in per.items() if cp.covers(r)]
            if not gone:
                continue
            n, h = self._heads[rep]
            for s in gone:
                h = _xor(h, _head_item(per.pop(s)))
            self._n -= len(gone)
            if per:
                self._heads[rep] = (n - len(gone), h)
            else:
                del self._by[rep], self._heads[rep]
        self._log = [r for r in self._log if not cp.covers(r)]
        self.rewrites += 1
        return True

    def discard(self, pred) -> list[Report]:
        """Remove every report `pred` holds true for (an epoch of a revoked anchor: gtracd.keyring); the
        derivation starts over. The removed reports, in order."""
        gone = [r for per in self._by.values() for r in per.values() if pred(r)]
        for r in gone:
            per = self._by[r.reporter]
            del per[r.seq]
            n, h = self._heads[r.reporter]
            if per:
                self._heads[r.reporter] = (n - 1, _xor(h, _head_item(r)))
            else:
                del self._by[r.reporter], self._heads[r.reporter]
            self._n -= 1
        if gone:
            self._log = [r for r in self._log if not pred(r)]
            self.rewrites += 1
        return sorted(gone, key=_order)

    def get(self, reporter: bytes, seq: int) -> Report | None:
        return self._by.get(reporter, {}).get(seq)

    def add(self, r: Report) -> bool:
        """True if the state changed."""
        if self.checkpoint is not None and self.checkpoint.covers(r):
            self.below_checkpoint += 1
            return False
        per = self._by.setdefault(r.reporter, {})
        cur = per.get(r.seq)
        if cur is not None:
            if cur == r:
                return False
            self.equivocations += 1
            if r.digest >= cur.digest:
                return False
            n, h = self._heads[r.reporter]
            self._heads[r.reporter] = (n, _xor(_xor(h, _head_item(cur)), _head_item(r)))
            per[r.seq] = r
            self.rewrites += 1
            self._log.append(r)
            return True
        per[r.seq] = r
        n, h = self._heads.get(r.reporter, (0, bytes(16)))
        self._heads[r.reporter] = (n + 1, _xor(h, _head_item(r)))
        self._n += 1
        self._log.append(r)
        return True

    def merge(self, other: Ledger) -> Ledger:
        """The join: the later checkpoint, and the union of both sides' reports at or above it."""

        out = Ledger(checkpoint=later(self.checkpoint, other.checkpoint))
        for r in self.reports() + other.reports():
            out.add(r)
        out.equivocations += self.equivocations
        return out

    def __len__(self) -> int:
        return self._n

    def __eq__(self, other) -> bool:
        return isinstance(other, Ledger) and self._by == other._by and self.checkpoint == other.checkpoint

    def __contains__(self, key) -> bool:
        rep, seq = key
        return seq in self._by.get(rep, {})

    def reports(self) -> list[Report]:
        return sorted((r for per in self._by.values() for r in per.values()), key=_order)

    # ---- anti-entropy (digest -> diff -> want / push)
    def heads(self) -> dict[str, dict]:
        """Per reporter (hex public key): {n: count, h: XOR of item hashes}. Equal heads => equal sub-states."""
        return {rep.hex(): {"n": n, "h": h} for rep, (n, h) in self._heads.items()}

    def reporters(self):
        """The reporters held (a live view: do not change the ledger while iterating)."""
        return self._by.keys()

    def seqs(self, reporter: bytes) -> list[int]:
        return sorted(self._by.get(reporter, {}))

    def diff(self, their_heads: dict[str, dict]) -> dict[str, list[int]]:
        """For every reporter whose head differs from theirs (either side may lack it): my seqs."""
        out = {}
        for hexrep, (n, h) in ((k.hex(), v) for k, v in self._heads.items()):
            th = their_heads.get(hexrep)
            if th is None or th["n"] != n or bytes(th["h"]) != h:
                out[hexrep] = self.seqs(bytes.fromhex(hexrep))
        for hexrep in their_heads:
            if hexrep not in out and _unhex(hexrep) not in self._heads:
                out[hexrep] = []
        return out

    def reconcile(self, their_seqs: dict[str, list[int]]) -> tuple[dict[str, list[int]], list[Report]]:
        """Given the other side's seqs for the reporters that differ: (what I lack, what they lack)."""
        want: dict[str, list[int]] = {}
        give: list[Report] = []
        for hexrep, seqs in their_seqs.items():
            rep = _unhex(hexrep)
            if rep is None:
                continue
            mine = self._by.get(rep, {})
            theirs = set(seqs)
            if theirs and theirs == set(mine):  # same seqs, different heads: an equivocation; swap them all
                want[hexrep] = sorted(theirs)
                give.extend(mine.values())
                continue
            lack = sorted(theirs.difference(mine))
            if lack:
                want[hexrep] = lack
            give.extend(r for s, r in mine.items() if s not in theirs)
        return want, sorted(give, key=_order)

    def pick(self, want: dict[str, list[int]]) -> list[Report]:
        out = []
        for hexrep, seqs in want.items():
            per = self._by.get(_unhex(hexrep) or b"", {})
            out.extend(per[s] for s in seqs if s in per)
        return out


def _start(ledger: Ledger, p: RuleParams) -> Fold:
    return ledger.checkpoint.fold(p) if ledger.checkpoint is not None else Fold(p)


def derive(ledger: Ledger, p: RuleParams = RuleParams()) -> tuple[dict[str, float], dict[str, float]]:
    """(trust, latency EWMA) per peer id, deterministic for a given state (checkpoint + reports)."""
    f = _start(ledger, p)
    for r in ledger.reports():
        f.apply(r)
    return f.trust, f.latency


class Derived:
    """`derive` kept current as reports arrive: a report that sorts after everything folded so far is applied
    incrementally (the common case: new reports are recent); anything else refolds from scratch. Either way
    the result equals `derive(ledger)` bit for bit."""

    def __init__(self, ledger: Ledger, p: RuleParams = RuleParams()):
        self.ledger, self.p = ledger, p
        # the checkpoint's fold, decoded once: a refold starts from a copy of it (decoding a month's state
        # took half a second, and a sync's pages arriving out of order refold again and again)
        self._base: tuple = (None, Fold(p))
        self._fold = self._start()
        self._rewrites = ledger.rewrites
        self.refolds = 0

    def _start(self) -> Fold:
        cp = self.ledger.checkpoint
        if self._base[0] is not cp:
            self._base = (cp, _start(self.ledger, self.p))
        return self._base[1].copy()

    def stale(self) -> bool:
        """Would `current()` have to refold (a rewrite, or a change that sorts before what is folded)?"""
        lg = self.ledger
        if self._rewrites != lg.rewrites:
            return True
        return self._fold.last is not None and any(_order(r) <= self._fold.last for r in lg._log)

    def current(self) -> Fold:
        lg = self.ledger
        new = lg.take_log()
        if not new and self._rewrites == lg.rewrites:
            return self._fold
        new_sorted = sorted(new, key=_order)
        if (self._rewrites != lg.rewrites or (self._fold.last is not None and new_sorted
                                               and _order(new_sorted[0]) <= self._fold.last)):
            self._rewrites = lg.rewrites
            self.refolds += 1
            self._fold = self._start()  # from the checkpoint, or from scratch without one
            new_sorted = lg.reports()
        for r in new_sorted:
            self._fold.apply(r)
        return self._fold


def make_checkpoint(prev: Checkpoint | None, reports, boundary: float, p: RuleParams) -> Checkpoint:
    """Fold reports (a Ledger's, or any iterable: duplicates and equivocations are resolved as the ledger
    resolves them) with prev.boundary <= ts < boundary into a checkpoint at `boundary`, continuing from
    `prev` (whose boundary must not be later)."""

    if prev is not None and prev.boundary > boundary:
        raise ValueError("a checkpoint cannot move back")
    held = reports if isinstance(reports, Ledger) and reports.checkpoint == prev else Ledger(
        reports.reports() if isinstance(reports, Ledger) else reports, checkpoint=prev)
    below = [r for r in held.reports() if r.ts < boundary]  # in the fold's total order already
    f = prev.fold(p) if prev is not None else Fold(p)
    upto = dict(prev.upto) if prev is not None else {}
    for r in below:
        f.apply(r)
        if r.seq > upto.get(r.reporter, -1):
            upto[r.reporter] = r.seq
    digest = _chain(prev.digest if prev is not None else b"", set_digest(below))
    state = fold_state(f, boundary, upto)
    if len(state) > STATE_MAX:  # replicas would refuse it: never sign one
        raise ValueError(f"a checkpoint state of {len(state)} bytes exceeds {STATE_MAX}")
    cp = Checkpoint(boundary, digest, (prev.count if prev is not None else 0) + len(below), state)
    cp.__dict__["upto"] = upto  # what the state says (decoding it would give an equal dict)
    return cp


def _chain(prev: bytes, new: bytes) -> bytes:
    """The digest of everything folded: the previous checkpoint's digest chained with this slice's."""
    return new if not prev else hashlib.sha256(prev + new).digest()
