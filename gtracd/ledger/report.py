"""A trust report as the ledger holds it: one seeker's signed account of one chain (per-hop latency, outcome,
culprit), or an anchors' epoch record. Immutable; keyed by (reporter, seq); ordered by (ts, reporter, seq)."""

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
    outcome: str  # "success" | "failure" | "wrong_output" | "epoch" (a ledger_epoch record)
    culprit: int = -1  # index into chain; -1 unknown / none
    raw: bytes = field(default=b"", compare=False)  # the signed envelope, for forwarding
    epoch: int = 0  # ledger_epoch records only
    priors: tuple[tuple[str, float], ...] = ()  # ledger_epoch records only: (peer id, trust), sorted
    evidence: tuple[bytes, ...] = ()  # wrong_output only: digests of the input, then each chain peer's output

    @property
    def key(self) -> tuple[bytes, int]:
        return (self.reporter, self.seq)

    @property
    def digest(self) -> bytes:
        h = hashlib.sha256()
        fields = (self.reporter, self.seq, self.ts, self.chain, self.latency_ms, self.outcome, self.culprit)
        if self.outcome == "epoch":
            fields += (self.epoch, self.priors)
        if self.outcome == "wrong_output":
            fields += (self.evidence,)
        h.update(repr(fields).encode())
        return h.digest()

    @classmethod
    def from_envelope(cls, env) -> Report:
        b = env.body
        if env.kind == "ledger_epoch":
            return cls(env.sender, env.seq, env.ts, (), (), "epoch", -1, env.raw, b["epoch"],
                       tuple(sorted((k, float(v)) for k, v in b["priors"].items())))
        ev = b.get("evidence")
        evidence = (bytes(ev["input"]), *(bytes(x) for x in ev["outputs"])) if ev else ()
        return cls(env.sender, env.seq, env.ts, tuple(b["chain"]), tuple(float(x) for x in b["latency_ms"]),
                   b["outcome"], b["culprit"], env.raw, evidence=evidence)


def order(r: Report) -> tuple:
    return (r.ts, r.reporter, r.seq)


def unhex(h: str) -> bytes | None:
    try:
        b = bytes.fromhex(h)
    except ValueError:
        return None
    return b if len(b) == 32 else None
