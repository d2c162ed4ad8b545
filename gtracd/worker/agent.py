"""The driver of a self-placing worker (`--layers auto`): survey, choose, announce, re-check, load; then heal.

It reads the worker's view of the network (heartbeats and the ledger replica, kept by the same follower a
seeker runs: control/follower.py) and feeds the pure decisions (membership.placement, membership.healing). Every decision is logged in
one line with its reason, and kept in the worker's status.

Join: announce `joining` (with the budget) at a fast cadence and listen for `survey_s` (more than one
heartbeat period, so every serving worker has been heard); place jointly with the other joiners seen; announce
`loading` the chosen range; after `recheck_s` re-check: loaders whose layers others cover while a hole is
open are placed again, jointly, around the committed ranges (see _recheck). Then load the shard and serve.

Heal: every second (or half heartbeat), look for holes in serving coverage. A hole must persist
`heal_after_s` before anyone moves (hysteresis); for a bounded grace after that, claims (workers now joining,
loading, or moving) are respected (see heal_decision); a worker moves at most once per `move_window_s`, and
after announcing `draining` with its target it re-checks: if a worker with a smaller peer id heads for an
overlapping target, it stands down.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

import trio

from ..errors import UserError
from ..membership.healing import Mover, heal, holes
from ..membership.placement import Budget, Choice, Footprint, Joiner, place

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.control.peerview import PeerView

log = logging.getLogger("gtracd.membership")
RECHECK_S = 1.0
LOAD_GRACE_S = 60.0  # a loading range or a move's target counts as coverage this long at most
CLAIM_SLACK_S = 5.0  # a joiner counts this long after one survey and re-check
MAX_JOINERS = 32  # joiners considered in one joint placement (bounded work per decision)


def budget_of(max_layers: int, memory_mib: int) -> Budget:
    return Budget(max_layers or None, memory_mib * 2**20 if memory_mib else None)


def too_small(budget: Budget, fp: Footprint) -> UserError:
    return UserError(f"--layers auto: the budget ({budget.describe(fp)}) cannot hold one layer of this model (a "
                     f"layer needs {min(fp.layer_bytes) / 2**20:.0f} MiB; the first and last ranges also carry "
                     f"{fp.first_bytes / 2**20:.0f} / {fp.last_bytes / 2**20:.0f} MiB)")


class Agent:
    def __init__(self, daemon, view: PeerView, me: str, model: str, fp: Footprint, budget: Budget, settings: Settings, load):
        self.daemon, self.view, self.me, self.model, self.fp, self.budget = daemon, view, me, model, fp, budget
        self.s = settings
        self.load = load  # (start, end) -> a ShardServer (runs in a thread; torch stays in engine/)
        self.range: tuple[int, int] | None = None
        self.moves = 0
        self.last_move: float | None = None  # monotonic
        self.hole_since: float | None = None  # monotonic
        self.decisions: deque[str] = deque(maxlen=8)
        self.survey_s = 1.5 * settings.heartbeat_s + 1.0
        # announcements are published at once (Nudge): a rival deciding at the same moment is heard well
        # within this; one deciding later already sees our announcement and chooses around it
        self.recheck_s = RECHECK_S
        self.claim_grace_s = self.survey_s + self.recheck_s + LOAD_GRACE_S
        self.heal_after_s = settings.heal_after_s or 2 * settings.heartbeat_s
        self.load_s: list[float] = []
        self.move_parts: dict | None = None  # the last move's timeline: hysteresis, re-check, drain, load

    # ---- the shared view, as the pure functions take it
    def inputs(self, now: float | None = None, claims: bool = True):
        """(holders [(pid, start, end)], joiners, movers, moving {pid: target}, loading {pid: range}) of the
        others, for our model: alive peers at or above the trust floor. Serving peers hold their range. Claims
        (a joiner's coming placement, a loading range, a mover's target) count only while fresh — a joiner for
        one survey, a load or a move for LOAD_GRACE_S — and only with `claims`: a peer that never serves (a
        fake, or a stuck one) can delay decisions by a bounded time, never block them. At most MAX_JOINERS
        joiners (the longest-announced first) are considered."""
        now = time.monotonic() if now is None else now
        holders, joiners, movers, moving, loading = [], [], [], {}, {}
        since = self.view.state_since
        for w in list(self.view.workers.values()):
            if w.peer_id == self.me or w.model != self.model or w.total_layers != self.fp.layers:
                continue
            if not self.view.heard_recently(w, now) or self.view.trust(w.peer_id) < self.s.trust_floor:
                continue
            age = now - since.get(w.peer_id, now)
            b = budget_of(w.max_layers, w.memory_mib)
            if w.state == "serving" and w.has_range:
                holders.append((w.peer_id, w.start, w.end))
                if w.auto:
                    movers.append(Mover(w.peer_id, w.start, w.end, b))
            elif not claims:
                continue
            elif w.state == "joining" and age <= self.survey_s + self.recheck_s + CLAIM_SLACK_S:
                joiners.append((since.get(w.peer_id, now), Joiner(w.peer_id, b)))
            elif w.state == "loading" and w.has_range and age <= LOAD_GRACE_S:
                holders.append((w.peer_id, w.start, w.end))
                loading[w.peer_id] = (w.start, w.end)
            elif w.state == "draining" and w.target and age <= self.s.drain_s + LOAD_GRACE_S:
                holders.append((w.peer_id, *w.target))
                moving[w.peer_id] = tuple(w.target)
        joiners = [j for _, j in sorted(joiners, key=lambda x: (x[0], x[1].peer_id))[:MAX_JOINERS]]
        return holders, joiners, movers, moving, loading

    def decide(self, line: str) -> None:
        log.warning("%s", line)  # one line per decision, visible at the default level
        self.decisions.append(f"{time.strftime('%H:%M:%S')} {line}")

    def status(self) -> dict:
        return {"auto": True, "state": self.daemon.state, "range": list(self.range) if self.range else None,
                "target": list(self.daemon.target) if self.daemon.target else None, "moves": self.moves,
                "budget": self.budget.describe(self.fp), "load_s": [round(x, 2) for x in self.load_s],
                "last_move": self.move_parts,
                "decisions": list(self.decisions)}

    # ---- join
    async def join(self) -> None:
        d = self.daemon
        d.nudge.fast_s = 1.0
        d.announce(d.lifecycle.join())
        await trio.sleep(self.survey_s)  # a time window by nature: every serving worker heartbeats within it
        choice = self._place()
        self.range = choice.range
        d.announce(d.lifecycle.placed())
        await trio.sleep(self.recheck_s)  # our announcement reaches the others, theirs reach us
        again = self._recheck(choice)
        if again is not None:
            choice = again
            self.range = choice.range
            d.announce(d.lifecycle.placed())
        self.decide(f"placed at layers {choice.start}:{choice.end}: {choice.reason}")
        await self._load(choice.range)
        d.nudge.fast_s = None
        d.announce(d.lifecycle.loaded())

    def _recheck(self, choice: Choice) -> Choice | None:
        """After announcing `loading`: joiners whose announcements had not reached each other may have chosen
        overlapping ranges while a hole stays open (or a joiner that never loads was counted). Loaders whose
        layers are covered without them are placed again, jointly and deterministically (membership.healing:
        most redundant first, then peer id), around the committed ranges (serving and loading), never around
        joiners; every loader computes the same answer, so two never swap back and forth."""
        holders, _, _, _, loading = self.inputs()
        mine = (self.me, *choice.range)
        movable = [Mover(p, a, b, self._budget(p)) for p, (a, b) in loading.items()]
        plan = heal(self.fp, holders + [mine], movable + [Mover(self.me, *choice.range, self.budget)])
        again = plan.get(self.me)
        if again is None or again.range == choice.range:
            return None
        self.decide(f"re-placed: layers {choice.start}:{choice.end} are covered by others that chose at the same "
                    f"time while a hole is open")
        return Choice(self.me, again.start, again.end, again.reason.removeprefix("healing: "))

    def _budget(self, pid: str) -> Budget:
        w = self.view.workers.get(pid)
        return budget_of(w.max_layers, w.memory_mib) if w is not None else Budget()

    def _place(self) -> Choice:
        holders, joiners, _, _, _ = self.inputs()
        got = place(self.fp, [(a, b) for _, a, b in holders], joiners + [Joiner(self.me, self.budget)])
        if self.me not in got:
            raise too_small(self.budget, self.fp)
        return got[self.me]

    async def _load(self, rng: tuple[int, int]) -> None:
        t0 = time.monotonic()
        server = await trio.to_thread.run_sync(self.load, *rng)
        self.load_s.append(time.monotonic() - t0)
        self.daemon.install(server)

    # ---- heal
    async def heal_forever(self) -> None:
        while True:
            await trio.sleep(min(1.0, self.s.heartbeat_s / 2))
            await self.heal_once()

    def heal_decision(self, now: float) -> Choice | None:
        """Should this worker move now, and where (no I/O). The hole is judged on serving coverage; claims
        (joiners about to place, loads, other moves) are respected for `claim_grace_s` after the hysteresis,
        then ignored, so peers that never serve can delay healing but never block it."""
        if self.daemon.state != "serving" or self.range is None or self.daemon.leaving:
            return None
        mine = (self.me, *self.range)
        serving, _, movers, _, _ = self.inputs(now, claims=False)
        if not holes(self.fp.layers, [(a, b) for _, a, b in serving + [mine]]):
            self.hole_since = None
            return None
        if self.hole_since is None:
            self.hole_since = now
        age = now - self.hole_since
        if age < self.heal_after_s:
            return None
        if self.last_move is not None and now - self.last_move < self.s.move_window_s:
            return None
        holders = serving
        if age < self.heal_after_s + self.claim_grace_s:
            holders, joiners, movers, _, _ = self.inputs(now)
            planned = place(self.fp, [(a, b) for _, a, b in holders + [mine]], joiners)
            holders = holders + [(f"planned:{p}", *c.range) for p, c in planned.items()]
        return heal(self.fp, holders + [mine], movers + [Mover(self.me, *self.range, self.budget)]).get(self.me)

    async def heal_once(self) -> bool:
        """One look at the coverage; True if this worker moved."""
        choice = self.heal_decision(time.monotonic())
        if choice is None:
            return False
        t0 = time.monotonic()
        d = self.daemon
        d.announce(d.lifecycle.move(choice.range))  # announce first, then re-check
        await trio.sleep(self.recheck_s)
        _, _, _, moving, _ = self.inputs()
        rival = sorted(p for p, t in moving.items() if p < self.me and t[0] < choice.end and choice.start < t[1])
        if rival or d.leaving:
            if rival:
                self.decide(f"stood down: {rival[0][-8:]} (smaller peer id) is moving to heal the same hole")
            d.announce(d.lifecycle.stay())
            return False
        old = self.range
        self.decide(f"moving {old[0]}:{old[1]} -> {choice.start}:{choice.end}: {choice.reason}")
        t1 = time.monotonic()
        cut = await d.drain(self.s.drain_s)
        t2 = time.monotonic()
        if cut:
            self.decide(f"drain bound {self.s.drain_s:g}s cut {cut} session(s) (told `draining`, not blamed)")
        if d.leaving:
            return False
        d.install(None)
        self.range = choice.range
        d.announce(d.lifecycle.drained())
        try:
            await self._load(choice.range)
        except Exception as e:  # out of memory, a broken file...: go back to the range we had
            self.decide(f"loading {choice.start}:{choice.end} failed ({type(e).__name__}: {e}); reloading {old[0]}:{old[1]}")
            self.range = old
            await self._load(old)  # if this fails too the worker cannot serve: it exits with the error
        self.moves += 1
        self.last_move = time.monotonic()
        self.move_parts = {"hole_seen_s": round(t0 - self.hole_since, 2), "recheck_s": round(t1 - t0, 2),
                           "drain_s": round(t2 - t1, 2), "load_s": round(self.load_s[-1], 2)}
        self.hole_since = None
        d.announce(d.lifecycle.loaded())
        return True
