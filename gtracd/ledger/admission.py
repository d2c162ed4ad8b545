"""Anchor-side validation of trust reports (pure: the caller passes `now`).

A report is admitted when its signature held (checked by the caller's Verifier or `signature_ok`), it names
this network, it is not already held, its reporter is not one of the workers it rates, every latency is
plausible (0 < ms <= the request timeout), the reporter is within its rate limit (token bucket), it is not
older than the retention window, and every chain member is a known worker (heard in a heartbeat). A report
naming a worker not heard yet waits in a bounded pending set (an anchor that just restarted has not heard
the heartbeats yet) and is admitted when the worker is heard, or dropped as `unknown_peer` after a TTL. The
pending set is indexed by the workers each report still waits for, so a heartbeat costs what waits for that
worker, not a scan of the set; each reporter holds at most `pending_per_reporter` of it, and a report waits
for at most `pending_max_missing` unheard workers. When a bound is reached the answer is `pending_full`: the
seeker keeps the report and offers it again (never lost to a flood).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass

from ..errors import DecodeError, Dropped, Oversize
from ..identity import peer_id_from_public
from ..wire.envelope import Envelope, decode_envelope
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
    pending_per_reporter: int = 256
    pending_max_missing: int = 16  # unheard workers one pending report may wait for (more: offered again later)
    pending_ttl_s: float = 60.0
    max_known: int = 50_000  # workers remembered from heartbeats (least recently heard forgotten first)


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
        # worker -> the pending report that waits for it, or a set of them when several do (one key, not a set,
        # for most: the garbage collector walks every set, and a flood names thousands of workers once each)
        self._waiting: dict[str, tuple | set] = {}
        self._missing: dict[tuple[bytes, int], int] = {}  # pending report -> workers it still waits for
        self._pending_of: Counter[bytes] = Counter()  # reporter -> its pending reports
        self.deferred = 0  # offers answered pending_full (the seeker offers them again)
        self.verified = 0  # signatures checked by submit

    # ---- workers
    def heard(self, peer_id: str, now: float) -> list[Report]:
        """A heartbeat from `peer_id`: returns pending reports that became admissible (already added)."""
        self.known[peer_id] = now
        self.known.move_to_end(peer_id)
        if len(self.known) > self.p.max_known:
            self.known.popitem(last=False)
        waiting = self._waiting.pop(peer_id, None)
        if not waiting:
            return []
        out = []
        for key in (waiting if isinstance(waiting, set) else (waiting,)):
            self._missing[key] -= 1
            if self._missing[key] == 0:
                r = self._unpend(key)
                if self.ledger.add(r):
                    self.admitted += 1
                    out.append(r)
        return out

    def _pend(self, r: Report, now: float) -> None:
        missing = {p for p in r.chain if p not in self.known}
        self._pending[r.key] = (r, now)
        self._missing[r.key] = len(missing)
        self._pending_of[r.reporter] += 1
        for p in missing:
            held = self._waiting.get(p)
            if held is None:
                self._waiting[p] = r.key
            elif isinstance(held, set):
                held.add(r.key)
            else:
                self._waiting[p] = {held, r.key}

    def _unpend(self, key: tuple[bytes, int]) -> Report:
        r, _ = self._pending.pop(key)
        del self._missing[key]
        self._pending_of[r.reporter] -= 1
        if self._pending_of[r.reporter] <= 0:
            del self._pending_of[r.reporter]
        for p in r.chain:
            held = self._waiting.get(p)
            if held == key:
                del self._waiting[p]
            elif isinstance(held, set):
                held.discard(key)
                if not held:
                    del self._waiting[p]
        return r

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
            self._unpend(key)
            self.dropped["unknown_peer"] += 1
            n += 1
        return n

    def is_pending(self, reporter: bytes, seq: int) -> bool:
        return (reporter, seq) in self._pending

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

    def triage(self, raws, seen: set[bytes] | None = None) -> list[tuple]:
        """A seeker's submission, the cheap checks first: per signed report in order, (result, key, envelope).
        A result is set for what needs no signature check: a copy of a report held (or of one earlier in the
        batch), one already pending, one that does not decode; the rest (result None) await a verification
        (`needs`), which a caller may run off the event loop, then `finish`. `seen`: the batch's reports so
        far, when the caller triages it in parts."""
        out: list[tuple] = []
        seen = set() if seen is None else seen
        for raw in raws:
            raw = bytes(raw)
            try:
                env = decode_envelope(raw)
            except DecodeError as e:
                reason = "oversize" if isinstance(e, Oversize) else "malformed"
                self.dropped[reason] += 1
                out.append((reason, None, None))
                continue
            key = (env.sender, env.seq)
            held = self.ledger.get(*key)
            if raw in seen or (held is not None and held.raw == raw):
                self.dropped["duplicate"] += 1
                out.append(("duplicate", key, None))
            elif self.is_pending(*key):
                out.append(("pending", key, None))
            else:
                seen.add(raw)
                out.append((None, key, env))
        return out

    @staticmethod
    def needs(triaged: list[tuple]) -> list[Envelope]:
        return [env for res, _, env in triaged if res is None]

    def finish(self, triaged: list[tuple], signature_ok: list[bool], now: float) -> list[tuple[str, tuple | None]]:
        """The results of a triaged submission, given the verdicts of `needs(triaged)` in order."""
        verdicts = iter(signature_ok)
        out = []
        for res, key, env in triaged:
            if res is None:
                self.verified += 1
                if not next(verdicts):
                    self.dropped["bad_signature"] += 1
                    res = "bad_signature"
                else:
                    res = self.offer(env, now)
            out.append((res, key))
        return out

    def submit(self, raws, now: float) -> list[tuple[str, tuple | None]]:
        """triage, verify here, finish (the anchor verifies off its event loop instead)."""
        t = self.triage(raws)
        return self.finish(t, [env.signature_ok() for env in self.needs(t)], now)

    def offer(self, env: Envelope, now: float) -> str:
        """Validate and add. Returns 'admitted', 'pending', or the drop reason (counted)."""
        if self.is_pending(env.sender, env.seq):
            return "pending"
        try:
            r = self.check(env, now)
        except Dropped as e:
            self.dropped[e.reason] += 1
            return e.reason
        if r.chain and not all(p in self.known for p in r.chain):
            if len(self._pending) >= self.p.pending_max or \
                    self._pending_of[r.reporter] >= self.p.pending_per_reporter or \
                    sum(p not in self.known for p in r.chain) > self.p.pending_max_missing:
                self.deferred += 1
                return "pending_full"
            self._pend(r, now)
            return "pending"
        if self.ledger.add(r):
            self.admitted += 1
            return "admitted"
        self.dropped["duplicate"] += 1  # an equivocation that lost the tie-break
        return "duplicate"
