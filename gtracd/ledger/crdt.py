"""State-based CRDT ledger.

State: a grow-only map (reporter public key, seq) -> Report. Merge is the union (commutative, associative,
idempotent). A reporter that equivocates (two different reports under one key) is resolved
deterministically: the report with the smaller content digest wins on every replica.

Trust and latency are never stored: `derive` folds the reports in a total order (ts, reporter, seq), so every
replica holding the same set computes bit-identical floats.

Rules (the paper's, asymmetric and additive): success -> every chain peer +reward (cap 1); failure with a
known culprit -> that peer -penalty (floor 0); culprit unknown -> every hop -unknown_penalty. Slander (and
ballot-stuffing) resistance: one reporter moves one worker by at most `reporter_budget` in absolute value per
window of `window_s` seconds; what exceeds the budget is dropped. Latency: EWMA with weight alpha over the
seeker-measured hop latencies, starting at latency0_ms. Initial trust comes from configuration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Report:
    reporter: bytes  # 32-byte Ed25519 public key of the seeker that signed it
    seq: int
    ts: float
    chain: tuple[str, ...]
    latency_ms: tuple[float, ...]
    outcome: str  # "success" | "failure"
    culprit: int = -1  # index into chain; -1 unknown / none
    raw: bytes = field(default=b"", compare=False)  # the signed envelope, for forwarding

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.reporter, self.seq)

    @property
    def digest(self) -> bytes:
        h = hashlib.sha256()
        h.update(repr((self.reporter, self.seq, self.ts, self.chain, self.latency_ms, self.outcome,
                       self.culprit)).encode())
        return h.digest()

    @classmethod
    def from_envelope(cls, env) -> Report:
        b = env.body
        return cls(env.sender, env.seq, env.ts, tuple(b["chain"]), tuple(float(x) for x in b["latency_ms"]),
                   b["outcome"], b["culprit"], env.raw)


@dataclass(frozen=True)
class RuleParams:
    initial_trust: float = 0.97
    reward: float = 0.03
    penalty: float = 0.20
    unknown_penalty: float = 0.05
    alpha: float = 0.3
    latency0_ms: float = 250.0
    reporter_budget: float = 0.5
    window_s: float = 3600.0


class Ledger:
    def __init__(self, reports=()):
        self._r: dict[tuple[bytes, int], Report] = {}
        self.equivocations = 0
        for r in reports:
            self.add(r)

    def add(self, r: Report) -> bool:
        """True if the state changed."""
        cur = self._r.get(r.key)
        if cur is None:
            self._r[r.key] = r
            return True
        if cur == r:
            return False
        self.equivocations += 1
        if r.digest < cur.digest:
            self._r[r.key] = r
            return True
        return False

    def merge(self, other: Ledger) -> Ledger:
        out = Ledger(self._r.values())
        out.equivocations = self.equivocations
        for r in other._r.values():
            out.add(r)
        return out

    def __len__(self) -> int:
        return len(self._r)

    def __eq__(self, other) -> bool:
        return isinstance(other, Ledger) and self._r == other._r

    def __contains__(self, key) -> bool:
        return key in self._r

    def reports(self) -> list[Report]:
        return sorted(self._r.values(), key=lambda r: (r.ts, r.reporter, r.seq))

    # ---- anti-entropy
    def digest(self) -> dict[bytes, tuple[int, bytes]]:
        """Per reporter: (count, hash of its (seq, digest) pairs). Equal digests => equal sub-states."""
        per: dict[bytes, list[tuple[int, bytes]]] = {}
        for (rep, seq), r in self._r.items():
            per.setdefault(rep, []).append((seq, r.digest))
        out = {}
        for rep, items in per.items():
            h = hashlib.sha256()
            for seq, d in sorted(items):
                h.update(seq.to_bytes(8, "big") + d)
            out[rep] = (len(items), h.digest()[:16])
        return out

    def seqs(self, reporter: bytes) -> list[int]:
        return sorted(seq for (rep, seq) in self._r if rep == reporter)

    def missing_for(self, their_digest: dict[bytes, tuple[int, bytes]], their_seqs=None) -> list[Report]:
        """Reports the other side may lack: every reporter whose digest differs (all of that reporter's
        reports, or only the seqs they don't list when `their_seqs` is given)."""
        mine = self.digest()
        out = []
        for rep, dg in mine.items():
            if their_digest.get(rep) == dg:
                continue
            have = set(their_seqs.get(rep, ())) if their_seqs else set()
            out.extend(r for (rr, seq), r in self._r.items() if rr == rep and seq not in have)
        return sorted(out, key=lambda r: (r.ts, r.reporter, r.seq))


def derive(ledger: Ledger, p: RuleParams = RuleParams()) -> tuple[dict[str, float], dict[str, float]]:
    """(trust, latency EWMA) per peer id, deterministic for a given set of reports."""
    trust: dict[str, float] = {}
    lat: dict[str, float] = {}
    spent: dict[tuple[bytes, str, int], float] = {}

    def move(rep: Report, peer: str, delta: float) -> None:
        win = int(rep.ts // p.window_s)
        k = (rep.reporter, peer, win)
        left = p.reporter_budget - spent.get(k, 0.0)
        if left <= 0.0:
            return
        d = max(-left, min(left, delta))
        spent[k] = spent.get(k, 0.0) + abs(d)
        t = trust.get(peer, p.initial_trust) + d
        trust[peer] = 1.0 if t > 1.0 else (0.0 if t < 0.0 else t)

    for r in ledger.reports():
        for peer, ms in zip(r.chain, r.latency_ms, strict=False):
            prev = lat.get(peer, p.latency0_ms)
            lat[peer] = (1.0 - p.alpha) * prev + p.alpha * ms
        if r.outcome == "success":
            for peer in r.chain:
                move(r, peer, p.reward)
        elif r.culprit >= 0:
            move(r, r.chain[r.culprit], -p.penalty)
        else:
            for peer in r.chain:
                move(r, peer, -p.unknown_penalty)
    return trust, lat
