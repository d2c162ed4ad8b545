"""A ledger replica as a daemon holds it: the CRDT, its derived trust/latency kept current, and the durable
log behind it. Anchors and seekers both hold one; only anchors decide what gets in (see ledger.admission).
"""

from __future__ import annotations

import time
from pathlib import Path

import trio

from .ledger import Derived, Ledger, Report, ReportLog, RuleParams, verified_reports

# the settings every replica of a network must share: they decide the derived numbers
RULE_SETTINGS = ["initial_trust", "reward", "penalty", "unknown_penalty", "alpha", "latency0_ms", "reporter_budget",
                 "reporter_window_s", "wrong_output_penalty", "standing_age_s", "standing_reports", "newcomer_budget"]


def rule_params(s) -> RuleParams:
    return RuleParams(initial_trust=s.initial_trust, reward=s.reward, penalty=s.penalty,
                      unknown_penalty=s.unknown_penalty, alpha=s.alpha, latency0_ms=s.latency0_ms,
                      reporter_budget=s.reporter_budget, window_s=s.reporter_window_s,
                      wrong_output_penalty=s.wrong_output_penalty, standing_age_s=s.standing_age_s,
                      standing_reports=s.standing_reports, newcomer_budget=s.newcomer_budget)


def delta_reports(verifier, data: bytes, anchors: set[str], network: str) -> tuple[list[Report], int] | None:
    """A `ledger_delta` from gossip: None (drop counted) unless an anchor in the keyring signed it for this
    network; else its reports that verify, and how many did not."""
    env = verifier.admit(data, time.time(), kinds=("ledger_delta",))
    if env is None:
        return None
    if env.sender_id not in anchors:
        verifier.drop("untrusted_sender")  # ledger data only from keyring anchors
        return None
    if env.body["network"] != network:
        verifier.drop("wrong_network")
        return None
    return verified_reports(env.body["reports"], network, anchors)


class Replica:
    def __init__(self, path: Path | None, params: RuleParams):
        self.ledger = Ledger()
        self.derived = Derived(self.ledger, params)
        self.log = ReportLog(path) if path is not None else None
        self.loaded = 0
        if self.log is not None:
            for r in self.log.load():
                self.loaded += self.ledger.add(r)
        self._lock = trio.Lock()
        self.persisted = self.loaded

    async def persist(self, reports: list[Report]) -> None:
        """fsync the given (already added) reports before returning: callers acknowledge after this."""
        if self.log is None or not reports:
            return
        async with self._lock:
            await trio.to_thread.run_sync(self.log.append, [r.raw for r in reports])
            self.persisted += len(reports)

    async def merge(self, reports: list[Report]) -> list[Report]:
        """Add reports (already verified); persist and return the ones that changed the state."""
        new = [r for r in reports if self.ledger.add(r)]
        await self.persist(new)
        return new

    def trust_latency(self) -> tuple[dict[str, float], dict[str, float]]:
        f = self.derived.current()
        return f.trust, f.latency

    def close(self) -> None:
        if self.log is not None:
            self.log.close()
