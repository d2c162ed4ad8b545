"""The trust rules: how reports move trust and latency (the paper's asymmetric additive update and EWMA),
bounded per reporter by budgets and standing. `Fold` applies reports one at a time in the ledger's total
order; every replica that folds the same reports derives bit-identical numbers."""

from __future__ import annotations

from dataclasses import dataclass

from .report import Report
from .report import order as _order


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
    wrong_output_penalty: float = 0.5
    standing_age_s: float = 86400.0
    standing_reports: int = 20
    newcomer_budget: float = 0.005  # config.Settings holds the defaults; tests/test_config checks they agree
    # latency moves as trust does: relative to the value moved, per reporter per window, and pooled over all
    # non-established reporters per worker per epoch (once any reporter is established)
    latency_budget: float = 1.0
    newcomer_latency_budget: float = 0.005
    # per-identity state the fold keeps is bounded (fresh keys and heartbeat identities are free): beyond
    # these, the least valuable tenth is forgotten at once (reporters: not established, fewest corroborations,
    # oldest; workers' recent reporters: the longest unrated). Every replica forgets the same, in fold order.
    max_reporters: int = 200_000
    max_rated: int = 100_000


class Fold:
    """The derivation state: reports applied one at a time in the total order (ts, reporter, seq)."""

    def __init__(self, p: RuleParams):
        self.p = p
        self.last: tuple | None = None
        self.applied = 0
        self.epoch = 0
        # reporter standing: kept across epochs
        self.first: dict[bytes, float] = {}  # reporter -> ts of its first report
        self.corroborated: dict[bytes, int] = {}  # at most one per window: echoing a burst counts once
        self.stood: dict[bytes, int] = {}  # reporter -> the last window a corroboration counted in
        # worker -> reporter -> (ts, outcome ok), each in the order heard (ts order)
        self.recent: dict[str, dict[bytes, tuple[float, bool]]] = {}
        self.any_established = False  # from the first report of an established reporter on
        self._window = -1  # the latest budget window folded: budgets of earlier ones are never touched again
        self._reset()

    def _reset(self) -> None:
        """A fresh epoch: trust, latency and every budget start over."""
        self.trust: dict[str, float] = {}
        self.latency: dict[str, float] = {}
        self.spent: dict[tuple[bytes, str, int], float] = {}
        self.newcomer_spent: dict[str, float] = {}  # worker -> |trust| moved by non-established reporters
        self.lat_spent: dict[tuple[bytes, str, int], float] = {}  # relative latency moves, as `spent`
        self.newcomer_lat_spent: dict[str, float] = {}

    def copy(self) -> Fold:
        """An independent fold in the same state (values are immutable: copying the containers is enough)."""
        f = Fold.__new__(Fold)
        f.p, f.last, f.applied, f.epoch, f.any_established = self.p, self.last, self.applied, self.epoch, \
            self.any_established
        f.first, f.corroborated, f.stood = dict(self.first), dict(self.corroborated), dict(self.stood)
        f.recent = {peer: dict(seen) for peer, seen in self.recent.items()}
        f.trust, f.latency, f.spent = dict(self.trust), dict(self.latency), dict(self.spent)
        f.newcomer_spent = dict(self.newcomer_spent)
        f.lat_spent, f.newcomer_lat_spent = dict(self.lat_spent), dict(self.newcomer_lat_spent)
        f._window = self._window
        return f

    def established(self, reporter: bytes, ts: float) -> bool:
        f = self.first.get(reporter)
        # anchors admit a report up to one window old (ledger.admission max_age_s), so standing counts from the
        # latest time an anchor could have admitted the first one: backdating it gains nothing
        return (f is not None and ts - f >= self.p.standing_age_s + self.p.window_s
                and self.corroborated.get(reporter, 0) >= self.p.standing_reports)

    def _room(self, rep: Report, peer: str, spent: dict, pool: dict, budget: float, pool_budget: float,
              est: bool) -> tuple[float, tuple, bool]:
        """What this reporter may still move this worker by (its budget this window, and the newcomers' pool
        when it is not established and someone is), the budget key, and whether the pool applies."""
        k = (rep.reporter, peer, int(rep.ts // self.p.window_s))
        left = budget - spent.get(k, 0.0)
        use_pool = not est and self.any_established
        if use_pool:
            left = min(left, pool_budget - pool.get(peer, 0.0))
        return left, k, use_pool

    @staticmethod
    def _spend(spent: dict, pool: dict, k: tuple, peer: str, amount: float, use_pool: bool) -> None:
        spent[k] = spent.get(k, 0.0) + amount
        if use_pool:
            pool[peer] = pool.get(peer, 0.0) + amount

    def _move(self, rep: Report, peer: str, delta: float, est: bool) -> None:
        p = self.p
        left, k, use_pool = self._room(rep, peer, self.spent, self.newcomer_spent, p.reporter_budget,
                                       p.newcomer_budget, est)
        if left <= 0.0:
            return
        d = max(-left, min(left, delta))
        self._spend(self.spent, self.newcomer_spent, k, peer, abs(d), use_pool)
        t = self.trust.get(peer, p.initial_trust) + d
        self.trust[peer] = 1.0 if t > 1.0 else (0.0 if t < 0.0 else t)

    def _latency(self, rep: Report, peer: str, ms: float, est: bool) -> None:
        """The EWMA step toward `ms`, clamped to what this reporter (and, if it is not established, all
        newcomers together) may still move this worker's latency, relative to the value moved."""
        p = self.p
        prev = self.latency.get(peer, p.latency0_ms)
        left, k, use_pool = self._room(rep, peer, self.lat_spent, self.newcomer_lat_spent, p.latency_budget,
                                       p.newcomer_latency_budget, est)
        if left <= 0.0:
            return
        scale = max(prev, 1.0)
        d = max(-left * scale, min(left * scale, p.alpha * (ms - prev)))
        self._spend(self.lat_spent, self.newcomer_lat_spent, k, peer, abs(d) / scale, use_pool)
        self.latency[peer] = prev + d

    def _targets(self, r: Report) -> list[tuple[str, float, bool]]:
        """(worker, trust delta, outcome ok) per worker this report rates."""
        p = self.p
        if r.outcome == "success":
            return [(peer, p.reward, True) for peer in r.chain]
        if r.outcome == "wrong_output":
            return [(r.chain[r.culprit], -p.wrong_output_penalty, False)]
        if r.culprit >= 0:
            return [(r.chain[r.culprit], -p.penalty, False)]
        return [(peer, -p.unknown_penalty, False) for peer in r.chain]

    def _stand(self, r: Report, targets, est: bool) -> None:
        """Corroboration, after the report moved trust. Once any reporter is established, only established
        reporters corroborate (fresh keys echoing each other earn nothing), and a reporter earns at most one
        corroboration per window (echoing a burst of honest reports counts once)."""
        horizon = r.ts - self.p.window_s
        window = int(r.ts // self.p.window_s)
        corroborated = self.stood.get(r.reporter) == window  # already counted in this window
        counted = corroborated
        strict = self.any_established
        for peer, _, ok in targets:
            seen = self.recent.get(peer)
            if seen is None:
                if len(self.recent) >= self.p.max_rated:
                    self._forget_rated()
                seen = self.recent[peer] = {}  # in the order last heard (reports apply in ts order)
            if not corroborated:
                for q, (ts, qok) in reversed(seen.items()):  # the latest first: stop at the window's edge
                    if ts < horizon:
                        break
                    if q != r.reporter and qok == ok and (not strict or self.established(q, r.ts)):
                        corroborated = True
                        break
            seen.pop(r.reporter, None)
            seen[r.reporter] = (r.ts, ok)
            if len(seen) > 256:  # keep it bounded: forget reporters silent for a whole window
                for q in [q for q, (ts, _) in seen.items() if ts < horizon]:
                    del seen[q]
        self.any_established = self.any_established or est
        if corroborated and not counted:
            self.corroborated[r.reporter] = self.corroborated.get(r.reporter, 0) + 1
            self.stood[r.reporter] = window

    def _forget_reporters(self, ts: float) -> None:
        keep = {q for q in self.first if self.established(q, ts)}
        others = sorted((q for q in self.first if q not in keep),
                        key=lambda q: (self.corroborated.get(q, 0), self.first[q], q))
        for q in others[:max(1, len(self.first) // 10)]:
            del self.first[q]
            self.corroborated.pop(q, None)
            self.stood.pop(q, None)

    def _forget_rated(self) -> None:
        latest = sorted(self.recent, key=lambda w: (max((ts for ts, _ in self.recent[w].values()), default=0.0), w))
        for w in latest[:max(1, len(self.recent) // 10)]:
            del self.recent[w]

    def apply(self, r: Report) -> None:
        p = self.p
        self.last = _order(r)
        self.applied += 1
        if r.outcome == "epoch":
            if r.epoch < self.epoch:
                return
            if r.epoch > self.epoch:  # a fresh epoch: derivation restarts here
                self.epoch = r.epoch
                self._reset()
            for peer, t in r.priors:
                self.trust[peer] = t
            return
        if len(set(r.chain)) != len(r.chain):  # admission refuses these; a replica that holds one folds nothing
            return
        window = int(r.ts // p.window_s)
        if window > self._window:  # reports fold in ts order: the budgets of past windows are done with
            self._window = window
            self.spent = {k: v for k, v in self.spent.items() if k[2] >= window}
            self.lat_spent = {k: v for k, v in self.lat_spent.items() if k[2] >= window}
        if r.reporter not in self.first:
            self.first[r.reporter] = r.ts
            if len(self.first) > p.max_reporters:
                self._forget_reporters(r.ts)
        est = self.established(r.reporter, r.ts)
        for peer, ms in zip(r.chain, r.latency_ms, strict=False):
            self._latency(r, peer, ms, est)
        targets = self._targets(r)
        for peer, delta, _ in targets:
            self._move(r, peer, delta, est)
        self._stand(r, targets, est)
