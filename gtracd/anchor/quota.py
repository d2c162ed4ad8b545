"""Who may ask an anchor what, and at what rate (pure: the caller passes `now`).

Ledger streams are open to every peer the dialler allows (seekers submit and pull, workers pull), so each
request is paid for from token buckets before any work: per remote peer, and for all non-anchor peers
together (fresh peer ids are free, so a per-peer bucket alone bounds nothing). Keyring anchors are never
limited: anti-entropy between replicas must not starve. What a request costs:

    sync_digest (last page: a diff is built)   1 session        per peer: 1 per `session_every_s`, burst 3
                                                                 all peers: `sessions_per_s`, burst 4x
    submit                                      its reports'    per peer: `report_bytes_per_s`, burst 16x
                                                bytes (the work  all peers: 4x that
                                                grows with them)
    sync_digest offered a checkpoint            its state's      the same byte buckets (a follower needs
                                                bytes            the state once, not every round)
A request over budget waits for its budget when it comes back soon (protocols/ledgerstream.Hold), else is
answered `busy` with when to come back. A peer over its own budget *cools* until then: the anchor holds its
next few ledger streams unread until the retry time, then serves them, and resets the rest (a peer that
ignores the retry time waits it out anyway). The per-peer table is bounded (least recently used peers
forgotten first: a forgotten peer starts with a full bucket, which the shared bucket still bounds)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class QuotaParams:
    session_every_s: float = 6.0  # the anchor passes 3 x its sync_s (a follower pulls every sync_s, round robin)
    sessions_per_s: float = 20.0
    report_bytes_per_s: float = 128 * 1024  # ~300 honest reports a second (a 64-hop chain costs 8 of them)
    max_peers: int = 10_000


class Bucket:
    __slots__ = ("rate", "burst", "tokens", "at")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate, self.burst, self.tokens, self.at = rate, burst, burst, now

    def _fill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.at) * self.rate)
        self.at = now

    def wait(self, cost: float, now: float) -> float:
        """Seconds until `cost` tokens are there (0: now). A cost above the burst goes when the bucket is full
        (into debt): it is possible, at the bucket's rate."""
        self._fill(now)
        return 0.0 if self.tokens >= cost else (min(cost, self.burst) - self.tokens) / self.rate

    def take(self, cost: float) -> None:
        self.tokens -= cost


class Quota:
    def __init__(self, anchors: set[str] | frozenset[str], p: QuotaParams = QuotaParams()):
        self.anchors, self.p = anchors, p
        self._peers: OrderedDict[tuple[str, str], Bucket] = OrderedDict()
        self._shared: dict[str, Bucket] = {}
        self.refused: dict[str, int] = {}
        self._cool: OrderedDict[str, float] = OrderedDict()  # peer -> until when its streams are reset unread

    def cooling(self, remote: str, now: float) -> float | None:
        """Until when (the caller's clock) `remote` cools, or None."""
        until = self._cool.get(remote)
        if until is None:
            return None
        if until <= now:
            del self._cool[remote]
            return None
        self.refused["cooling"] = self.refused.get("cooling", 0) + 1
        return until

    def _rates(self, what: str) -> tuple[float, float, float, float]:
        p = self.p
        if what == "session":
            return 1.0 / p.session_every_s, 3.0, p.sessions_per_s, 4 * p.sessions_per_s
        return p.report_bytes_per_s, 16 * p.report_bytes_per_s, 4 * p.report_bytes_per_s, \
            64 * p.report_bytes_per_s

    def ask(self, remote: str, what: str, cost: float, now: float) -> float:
        """ask_all with one cost."""
        return self.ask_all(remote, [(what, cost)], now)

    def _buckets(self, remote: str, what: str, now: float) -> tuple[Bucket, Bucket]:
        rate, burst, shared_rate, shared_burst = self._rates(what)
        key = (remote, what)
        mine = self._peers.get(key)
        if mine is None:
            mine = self._peers[key] = Bucket(rate, burst, now)
            if len(self._peers) > self.p.max_peers:
                self._peers.popitem(last=False)
        else:
            self._peers.move_to_end(key)
        shared = self._shared.get(what)
        if shared is None:
            shared = self._shared[what] = Bucket(shared_rate, shared_burst, now)
        return mine, shared

    def ask_all(self, remote: str, costs: list[tuple[str, float]], now: float) -> float:
        """0.0 if `remote` may spend every (what, cost) now ("session" | "bytes"; all are spent); else the
        seconds after which it may try again (nothing spent)."""
        if remote in self.anchors:
            return 0.0
        costs = [(w, c) for w, c in costs if c > 0]
        found = [(self._buckets(remote, w, now), w, c) for w, c in costs]
        own = max((mine.wait(c, now) for (mine, _), _, c in found), default=0.0)
        wait = max([own] + [shared.wait(c, now) for (_, shared), _, c in found])
        if wait > 0.0:
            for _, w, _ in found:
                self.refused[w] = self.refused.get(w, 0) + 1
            if own > 0.0:  # its own budget spent (not only the shared one): it cools
                self._cool[remote] = now + own
                self._cool.move_to_end(remote)
                if len(self._cool) > self.p.max_peers:
                    self._cool.popitem(last=False)
            return wait
        for (mine, shared), _, c in found:
            mine.take(c)
            shared.take(c)
        return 0.0
