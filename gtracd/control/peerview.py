"""The seeker's local view of workers (pure): who hosts what, who is alive, and the seeker's own latency
EWMA and trust estimates. Routing reads a Snapshot of it; it never waits on the network.

Trust here starts from configuration (never a worker's claim) and follows the paper's asymmetric rules on
this seeker's own observations; the anchors' ledger (control plane) supersedes it when available.

Heartbeat identities are free, so the view is bounded: at most `max_workers` entries, and a worker is
*proven* once this seeker measured it or the ledger knows it. Proven workers are never evicted for unproven
ones; an unproven newcomer that would exceed the bound is the one left out (the earliest heard stay), and
routing sees every proven worker of the model but only `probation` unproven ones at a time, taken in turn (a
newcomer routed becomes proven, with the trust it earned). So a flood of fake identities costs a seeker
neither memory nor routing time beyond these bounds.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import islice

from ..routing import Peer, Snapshot


@dataclass
class WorkerEntry:
    peer_id: str
    addr: str
    start: int
    end: int
    total_layers: int
    model: str
    name: str = ""
    alive: bool = True
    latency_ms: float | None = None  # seeker-measured EWMA; None until observed
    trust: float | None = None  # local estimate; None = initial trust
    last_seen: float = 0.0
    free_tokens: int | None = None
    load: float | None = None
    state: str = "serving"  # joining | loading | serving | draining (wire.kinds.WORKER_STATES)
    target: list[int] | None = None  # draining to move here (healing)
    auto: bool = False  # self-placing: may move to heal a hole
    max_layers: int = 0  # its budget (0: none), for joint placement
    memory_mib: int = 0
    addrs: list[str] = field(default_factory=list)  # every address it announced (addr is the first)

    @property
    def has_range(self) -> bool:
        return 0 <= self.start < self.end <= self.total_layers


def entry_from_heartbeat(env, now: float) -> WorkerEntry | None:
    """A verified heartbeat envelope -> the worker it announces (its own signature names it), heard at `now`
    (monotonic, as every liveness time in the view)."""
    b = env.body
    addrs = [a for a in b["addrs"] if "/p2p/" in a]
    if not addrs:
        return None
    return WorkerEntry(env.sender_id, addrs[0], b["start"], b["end"], b.get("total_layers") or b["end"], b["model"],
                       b.get("name", ""), alive=True, last_seen=now, free_tokens=b["free_tokens"], load=b["load"],
                       state=b.get("state", "serving"), target=b.get("target"), auto=bool(b.get("auto", False)),
                       max_layers=b.get("max_layers", 0), memory_mib=b.get("memory_mib", 0), addrs=addrs)


DRAIN_EXCUSES = 2  # a leave and a move, say: more drains than this within the window excuse nothing
MAX_WORKERS = 4096  # entries a view holds (proven ones first)
PROBATION = 4  # unproven workers of a model routing may consider at once (in turn)


class PeerView:
    def __init__(self, initial_trust: float = 0.97, latency0_ms: float = 250.0, alpha: float = 0.3,
                 reward: float = 0.03, penalty: float = 0.20, unknown_penalty: float = 0.05,
                 model: str | None = None, depth: int | None = None, max_workers: int = MAX_WORKERS,
                 probation: int = PROBATION):
        self.model = model  # the pinned fingerprint this seeker serves (None: in-process use, see pinned())
        self.depth = depth  # its number of layers when known from the pin (workers claiming another are ignored)
        self.busy_until: dict[str, float] = {}  # worker -> monotonic time its `busy` refusal asked us to wait
        self.workers: dict[str, WorkerEntry] = {}
        self.initial_trust, self.latency0_ms, self.alpha = initial_trust, latency0_ms, alpha
        self.reward, self.penalty, self.unknown_penalty = reward, penalty, unknown_penalty
        self.external_trust: dict[str, float] = {}  # from the anchors' ledger, when present
        self.external_latency: dict[str, float] = {}
        # a worker not heard within this (seconds on the monotonic clock, as heartbeats are received) is out of
        # routing at once, whether or not refresh() has run since (None: only refresh() decides)
        self.node_timeout_s: float | None = None
        # draining: each worker's last few drain starts (monotonic) and the range it last drained (an excuse for a
        # cut session is granted sparingly: see drained_since)
        self.drained_range: dict[str, tuple[int, int]] = {}
        self.drains: dict[str, list[float]] = {}
        self.state_since: dict[str, float] = {}  # worker -> when (monotonic) its current state was first heard
        self.listeners: list = []  # called (no arguments) when a worker appears, returns, moves or changes state
        self.max_workers, self.probation = max_workers, probation
        self.proven: set[str] = set()  # measured here, or known to the ledger
        self._unproven: OrderedDict[str, None] = OrderedDict()  # the rest, first heard first
        # model -> its proven / unproven workers, first heard first (what routing reads without a scan)
        self._proven_by: dict[str, dict[str, None]] = {}
        self._unproven_by: dict[str, OrderedDict[str, None]] = {}
        self.left_out = 0  # unproven newcomers refused because the view was full
        self.verified: dict[str, int] = {}  # peer -> turns it computed with every call checked and matched

    def _is_proven(self, pid: str) -> bool:
        w = self.workers.get(pid)
        return (pid in self.external_trust or pid in self.external_latency
                or (w is not None and (w.latency_ms is not None or w.trust is not None)))

    def _index(self, pid: str, model: str) -> None:
        if pid in self.proven:
            self._proven_by.setdefault(model, {})[pid] = None
        else:
            self._unproven_by.setdefault(model, OrderedDict())[pid] = None
            self._unproven.setdefault(pid, None)

    def _unindex(self, pid: str, model: str) -> None:
        for table in (self._proven_by, self._unproven_by):
            per = table.get(model)
            if per is not None:
                per.pop(pid, None)
                if not per:
                    del table[model]

    def _prove(self, pid: str) -> None:
        w = self.workers.get(pid)
        if w is not None and pid not in self.proven:
            self._unindex(pid, w.model)
            self.proven.add(pid)
            self._unproven.pop(pid, None)
            self._index(pid, w.model)

    def _forget(self, pid: str) -> None:
        w = self.workers.pop(pid, None)
        if w is not None:
            self._unindex(pid, w.model)
        self.proven.discard(pid)
        self._unproven.pop(pid, None)
        for d in (self.drained_range, self.drains, self.state_since, self.busy_until, self.verified):
            d.pop(pid, None)

    def set_ledger(self, trust: dict[str, float], latency: dict[str, float]) -> None:
        """The anchors' derived numbers: they supersede this view's own; the workers they name are proven."""
        self.external_trust, self.external_latency = trust, latency
        for pid in list(self._unproven):
            if pid in trust or pid in latency:
                self._prove(pid)

    def add(self, w: WorkerEntry) -> bool:
        """Add or replace a worker's entry; False if it was left out (a new unproven worker, view full)."""
        old = self.workers.get(w.peer_id)
        if old is None and len(self.workers) >= self.max_workers:
            if not self._is_proven(w.peer_id) and self._unproven:
                self.left_out += 1
                return False
            # a proven newcomer (known to the ledger) takes the place of the newest unproven one
            victim = next(reversed(self._unproven)) if self._unproven else None
            if victim is None:
                self.left_out += 1
                return False
            self._forget(victim)
        if old is not None:
            w.latency_ms, w.trust = old.latency_ms, old.trust
            if old.model != w.model:
                self._unindex(w.peer_id, old.model)
        self.workers[w.peer_id] = w
        if old is None or old.model != w.model:
            self._index(w.peer_id, w.model)
        if w.peer_id not in self.proven and self._is_proven(w.peer_id):
            self._prove(w.peer_id)
        if old is None or old.state != w.state:
            self.state_since[w.peer_id] = w.last_seen
            if w.state == "draining":
                self.drained_range[w.peer_id] = (w.start, w.end)
                self.drains.setdefault(w.peer_id, []).append(w.last_seen)
                del self.drains[w.peer_id][:-DRAIN_EXCUSES - 1]  # bounded: only the last few matter
        return True

    def heard(self, w: WorkerEntry) -> bool:
        """A heartbeat: add or refresh the worker. True if it is new or came back."""
        old = self.workers.get(w.peer_id)
        if not self.add(w):
            return False
        if old is None or not old.alive or (old.start, old.end, old.state, old.target) != (w.start, w.end, w.state,
                                                                                          w.target):
            for fn in list(self.listeners):
                fn()
        return old is None or not old.alive

    def refresh(self, now: float, node_timeout_s: float) -> list[str]:
        """Liveness: a worker is alive iff heard within node_timeout_s. Returns the ids that just went dead.
        Workers added without heartbeats (last_seen 0: given by --peer) are left as they are."""
        died = []
        for w in self.workers.values():
            if w.last_seen and w.alive and now - w.last_seen > node_timeout_s:
                w.alive = False
                died.append(w.peer_id)
        return died

    def expire(self, now: float, ttl_s: float) -> list[str]:
        """Ghosts: forget workers not heard within ttl_s (they were shown as gone until then)."""
        gone = [p for p, w in self.workers.items() if w.last_seen and now - w.last_seen > ttl_s]
        for p in gone:
            self._forget(p)
        return gone

    def restore(self, doc: dict, now: float, node_timeout_s: float, forget_after_s: float) -> list[WorkerEntry]:
        """Load a persisted view (`save_view`'s JSON): ghosts not heard within forget_after_s are dropped, the
        rest come back alive only if heard within node_timeout_s. Returns the ones worth redialling."""
        redial = []
        for w in doc.get("workers", []) if isinstance(doc, dict) else []:
            try:
                e = WorkerEntry(**w)
            except TypeError:
                continue
            if not isinstance(e.last_seen, (int, float)) or not e.last_seen or now - e.last_seen > forget_after_s:
                continue  # a ghost: not heard for so long it is forgotten
            e.alive = now - e.last_seen <= node_timeout_s
            if e.peer_id in self.workers or not self.add(e):
                continue
            if now - e.last_seen <= 10 * node_timeout_s:
                redial.append(e)
        return redial

    def heard_recently(self, w: WorkerEntry, now: float) -> bool:
        return w.alive and (self.node_timeout_s is None or not w.last_seen or now - w.last_seen <= self.node_timeout_s)

    def routable(self, w: WorkerEntry, now: float) -> bool:
        """Alive, serving and placed: a worker joining, loading or draining takes no new sessions."""
        return self.heard_recently(w, now) and w.state == "serving" and w.has_range

    def drained_since(self, pid: str, t: float, now: float | None = None) -> bool:
        """Is a broken session with this worker, opened at `t` (monotonic), excused by a drain? Only if it began to
        drain at or after `t`, has not come back serving the range it drained (a leave or a move, not a
        trick to shed blame), and began to drain at most DRAIN_EXCUSES times within the last 10 x node_timeout_s
        (300 s without a timeout)."""
        starts = self.drains.get(pid)
        if not starts or starts[-1] < t:
            return False
        w = self.workers.get(pid)
        if w is not None and w.state == "serving" and (w.start, w.end) == self.drained_range.get(pid):
            return False
        now = time.monotonic() if now is None else now
        window = self.node_timeout_s * 10 if self.node_timeout_s else 300.0
        return sum(1 for x in self.drains.get(pid, []) if now - x <= window) <= DRAIN_EXCUSES

    def status_rows(self, now: float, trust: dict | None = None, latency: dict | None = None) -> dict[str, dict]:
        """Every worker as `gtracd status --json` and `gtracd top` show it (JSON-ready, keyed by peer id); trust
        and latency from the given ledger-derived maps where they have the worker, else this view's own."""
        trust, latency = trust or {}, latency or {}
        return {w.peer_id: {"name": w.name, "layers": [w.start, w.end], "model": w.model,
                            "total_layers": w.total_layers, "alive": self.heard_recently(w, now), "state": w.state,
                            "heard_s_ago": round(now - w.last_seen, 1) if w.last_seen else None,
                            "trust": round(trust.get(w.peer_id, self.trust(w.peer_id)), 4),
                            "latency_ms": self._known_latency(w.peer_id, latency),
                            "load": w.load, "free_tokens": w.free_tokens}
                for w in self.workers.values()}

    def _known_latency(self, pid: str, latency: dict) -> float | None:
        """Measured here or known from the ledger; None rather than the latency0 prior routing assumes."""
        w = self.workers.get(pid)
        ms = latency.get(pid, w.latency_ms if w is not None and w.latency_ms is not None
                         else self.external_latency.get(pid))
        return None if ms is None else round(ms, 2)

    def trust(self, pid: str) -> float:
        if pid in self.external_trust:
            return self.external_trust[pid]
        w = self.workers.get(pid)
        return self.initial_trust if w is None or w.trust is None else w.trust

    def latency(self, pid: str) -> float:
        w = self.workers.get(pid)
        if w is not None and w.latency_ms is not None:
            return w.latency_ms
        return self.external_latency.get(pid, self.latency0_ms)

    def observe_latency(self, pid: str, ms: float) -> None:
        w = self.workers.get(pid)
        if w is None:
            return
        prev = self.latency(pid)
        w.latency_ms = (1 - self.alpha) * prev + self.alpha * ms
        self._prove(pid)

    def passed_check(self, pid: str) -> None:
        """`pid` computed a whole turn with every call checked against a replica, and matched (spot checks'
        probation: seeker/checker.py)."""
        if pid in self.workers:
            self.verified[pid] = self.verified.get(pid, 0) + 1

    def outcome(self, chain: list[str], success: bool, culprit: str | None = None) -> None:
        """The paper's asymmetric update on this seeker's own observation."""
        def bump(pid, d):
            w = self.workers.get(pid)
            if w is not None:
                w.trust = min(1.0, max(0.0, self.trust(pid) + d))
                self._prove(pid)
        if success:
            for pid in chain:
                bump(pid, self.reward)
        elif culprit is not None:
            bump(culprit, -self.penalty)
        else:
            for pid in chain:
                bump(pid, -self.unknown_penalty)

    def pinned(self) -> tuple[str, int] | None:
        """The model this seeker serves and its depth, as announced by the workers serving it. The model is
        pinned (`--model`); never chosen by how many heartbeats announce it. Without a pin (in-process library
        use) every known worker must announce the same fingerprint, else None."""
        fp = self.model
        if fp is None:
            fps = {w.model for w in self.workers.values()}
            if len(fps) != 1:
                return None
            fp = fps.pop()
        d = self._depth(fp)
        return (fp, d) if d is not None else None

    def _depth(self, fp: str) -> int | None:
        """The pin's depth when known; else the depth most workers of `fp` announce (ties: the smaller). The
        fingerprint covers the config, so honest workers of one fingerprint all announce the same depth."""
        if fp == self.model and self.depth:
            return self.depth
        counts: dict[int, int] = {}
        for w in self.candidates(fp):
            counts[w.total_layers] = counts.get(w.total_layers, 0) + 1
        return min(counts, key=lambda d: (-counts[d], d)) if counts else None

    def candidates(self, model: str, now: float | None = None) -> list[WorkerEntry]:
        """The workers of `model` routing may consider: every proven one, and `probation` routable unproven
        ones, in turn: each one offered goes to the back of the line, so every newcomer is offered in time and
        no early arrival holds a place. One not routable now is listed too (not alive) and goes back as well;
        the scan is bounded."""
        now = time.monotonic() if now is None else now
        out = [self.workers[p] for p in self._proven_by.get(model, ())]
        line = self._unproven_by.get(model)
        if not line:
            return out
        taken = 0
        for p in list(islice(line, 4 * self.probation)):
            w = self.workers[p]
            out.append(w)
            line.move_to_end(p)
            if self.routable(w, now):
                taken += 1
                if taken >= self.probation:
                    break
        return out

    def models_seen(self) -> dict[str, int]:
        """fingerprint -> how many known workers announce it (for error messages only)."""
        out: dict[str, int] = {}
        for w in self.workers.values():
            out[w.model] = out.get(w.model, 0) + 1
        return out

    def unreachable(self, pid: str, alive: bool = False) -> None:
        """What a seeker learned dialling or calling `pid`: presumed gone (alive False) until its next
        heartbeat, or still there (it answered, with an error)."""
        w = self.workers.get(pid)
        if w is not None:
            w.alive = alive

    def refused(self, pid: str, until: float) -> None:
        """A `busy` refusal: route around this worker until `until` (monotonic); it costs no trust."""
        self.busy_until[pid] = until

    def busy(self, now: float) -> set[str]:
        gone = [p for p, t in self.busy_until.items() if t <= now]
        for p in gone:
            del self.busy_until[p]
        return set(self.busy_until)

    def snapshot(self, model: str, now: float | None = None) -> Snapshot:
        """Routing's view of the workers serving `model` whose announced depth is the model's (a worker
        claiming another depth for the same fingerprint is lying, and left out). Only routable workers are
        alive in it (see routable)."""
        now = time.monotonic() if now is None else now
        total = self._depth(model) or 1
        ws = [w for w in self.candidates(model, now) if w.total_layers == total and w.has_range]
        return Snapshot(total, [Peer(w.peer_id, w.start, w.end, self.trust(w.peer_id), self.latency(w.peer_id),
                                     self.routable(w, now)) for w in ws])
