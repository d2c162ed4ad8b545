"""Anchor-side validation of trust reports (pure: the caller passes `now`).

A report is admitted when its signature held (checked by the caller's Verifier or `signature_ok`), it names
this network, it is not already held, its reporter is not one of the workers it rates, every latency is
plausible (0 < ms <= the request timeout), the reporter is within its rate limit (token bucket), it is not
older than the retention window, and every chain member is a known worker (heard in a heartbeat). A report
naming a worker not heard yet waits in a bounded pending set (an anchor that just restarted has not heard
the heartbeats yet) and is admitted when the worker is heard, or dropped as `unknown_peer` after a TTL.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from ..errors import Dropped
from ..identity import peer_id_from_public
from ..wire.envelope import Envelope
from .crdt import Ledger, Report


@dataclass(frozen=True)
class AdmissionParams:
    network: str
    rate_per_s: float = 5.0  # sustained reports per reporter
    burst: float = 50.0
    max_latency_ms: float = 25_000.0
    max_age_s: float = 3600.0
    max_future_s: float = 60.0
    pending_max: int = 10_000
    pending_ttl_s: float = 60.0


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float):
        self.tokens, self.at = tokens, at


class Admission:
    def __init__(self, ledger: Ledger, params: AdmissionParams, max_reporters: int = 100_000,
                 epoch_signers: frozenset[str] = frozenset()):
        self.ledger = ledger
        self.epoch_signers = epoch_signers  # keyring anchors: the only ones who may start a ledger epoch
        self.p = params
        # worker peer id -> last heard (wall clock), oldest first; kept only as long as a report naming it can
        # still be admitted (max_age_s, plus the pending TTL), so it does not grow with every worker ever heard
        self.known: OrderedDict[str, float] = OrderedDict()
        self.dropped: Counter[str] = Counter()
        self.admitted = 0
        self._buckets: OrderedDict[bytes, _Bucket] = OrderedDict()
        self._max_reporters = max_reporters
        self._pending: OrderedDict[tuple[bytes, int], tuple[Report, float]] = OrderedDict()

    # ---- workers
    def heard(self, peer_id: str, now: float) -> list[Report]:
        """A heartbeat from `peer_id`: returns pending reports that became admissible (already added)."""
        self.known[peer_id] = now
        self.known.move_to_end(peer_id)
        if not self._pending:
            return []
        out = []
        for key, (r, _) in list(self._pending.items()):
            if all(p in self.known for p in r.chain):
                del self._pending[key]
                if self.ledger.add(r):
                    self.admitted += 1
                    out.append(r)
        return out

    def expire(self, now: float) -> int:
        """Drop pending reports past their TTL (counted as unknown_peer; returns how many) and forget workers
        not heard for longer than any admissible report can be old."""
        horizon = now - self.p.max_age_s - self.p.pending_ttl_s
        while self.known and next(iter(self.known.values())) < horizon:
            self.known.popitem(last=False)
        n = 0
        while self._pending:
            key, (r, at) = next(iter(self._pending.items()))
            if now - at <= self.p.pending_ttl_s:
                break
            del self._pending[key]
            self.dropped["unknown_peer"] += 1
            n += 1
        return n

    @property
    def pending(self) -> int:
        return len(self._pending)

    # ---- reports
    def _rate_ok(self, reporter: bytes, now: float) -> bool:
        b = self._buckets.get(reporter)
        if b is None:
            b = self._buckets[reporter] = _Bucket(self.p.burst, now)
            if len(self._buckets) > self._max_reporters:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(reporter)
            b.tokens = min(self.p.burst, b.tokens + (now - b.at) * self.p.rate_per_s)
            b.at = now
        if b.tokens < 1.0:
            return False
        b.tokens -= 1.0
        return True

    def check(self, env: Envelope, now: float) -> Report:
        """Raise Dropped(reason) or return the report (not yet added)."""
        if env.kind not in ("trust_report", "ledger_epoch"):
            raise Dropped("unexpected_kind", env.kind)
        b = env.body
        if b["network"] != self.p.network:
            raise Dropped("wrong_network", b["network"])
        r = Report.from_envelope(env)
        held = self.ledger.get(r.reporter, r.seq)
        if held is not None and held == r:
            raise Dropped("duplicate", f"seq {r.seq}")
        if env.kind == "ledger_epoch":
            if env.sender_id not in self.epoch_signers:
                raise Dropped("not_anchor", "a ledger epoch must be signed by a keyring anchor")
            return r
        if peer_id_from_public(r.reporter) in r.chain:
            raise Dropped("self_report", "a worker cannot rate a chain it is part of")
        if len(set(r.chain)) != len(r.chain):  # one peer named many times: many latency and trust moves
            raise Dropped("repeated_peer", "a chain names each peer once")
        if any(not (0.0 < ms <= self.p.max_latency_ms) for ms in r.latency_ms):
            raise Dropped("implausible_latency", f"{r.latency_ms}")
        if r.ts > now + self.p.max_future_s or r.ts < now - self.p.max_age_s:
            raise Dropped("stale", f"ts {r.ts - now:+.0f}s")
        cp = self.ledger.checkpoint
        if cp is not None and cp.covers(r):  # never acknowledged as a duplicate: the seeker must not drop it
            raise Dropped("below_checkpoint", f"ts {r.ts:.0f} < {cp.boundary:.0f}")
        if not self._rate_ok(r.reporter, now):
            raise Dropped("rate_limited", peer_id_from_public(r.reporter))
        return r

    def offer(self, env: Envelope, now: float) -> str:
        """Validate and add. Returns 'admitted', 'pending', or the drop reason (counted)."""
        if (env.sender, env.seq) in self._pending:
            return "pending"
        try:
            r = self.check(env, now)
        except Dropped as e:
            self.dropped[e.reason] += 1
            return e.reason
        if r.chain and not all(p in self.known for p in r.chain):
            if len(self._pending) >= self.p.pending_max:
                self.dropped["unknown_peer"] += 1
                return "unknown_peer"
            self._pending[r.key] = (r, now)
            return "pending"
        if self.ledger.add(r):
            self.admitted += 1
            return "admitted"
        self.dropped["duplicate"] += 1  # an equivocation that lost the tie-break
        return "duplicate"
