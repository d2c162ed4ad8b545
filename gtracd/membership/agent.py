"""The driver of a self-placing worker (`--layers auto`): survey, choose, announce, re-check, load; then heal.

It reads the worker's view of the network (heartbeats and the ledger replica, kept by the same cache a seeker
uses) and feeds the pure decisions (membership.placement, membership.healing). Every decision is logged in
one line with its reason, and kept in the worker's status.

Join: announce `joining` (with the budget) at a fast cadence and listen for `survey_s` (more than one
heartbeat period, so every serving worker has been heard); place jointly with the other joiners seen; announce
`loading` the chosen range; after `recheck_s` re-check: if a worker with a smaller peer id announces an
overlapping range while a hole stays open, place again around the committed ranges. Then load the shard and serve.

Heal: every second (or half heartbeat), compute the healing plan for the holes that workers now joining
will not fill (their joint placement, as they will compute it, is taken into account). A hole must persist `heal_after_s` before anyone moves
(hysteresis), a worker moves at most once per `move_window_s`, and after announcing `draining` with its
target it re-checks: if a worker with a smaller peer id heads for an overlapping target, it stands down.
"""

from __future__ import annotations

import logging
import time
from collections import deque

import trio

from ..errors import UserError
from .healing import Mover, heal, holes
from .placement import Budget, Choice, Footprint, Joiner, choose, place

log = logging.getLogger("gtracd.membership")
RECHECK_S = 1.0


def budget_of(max_layers: int, memory_mib: int) -> Budget:
    return Budget(max_layers or None, memory_mib * 2**20 if memory_mib else None)


def too_small(budget: Budget, fp: Footprint) -> UserError:
    return UserError(f"--layers auto: the budget ({budget.describe(fp)}) cannot hold one layer of this model (a "
                     f"layer needs {min(fp.layer_bytes) / 2**20:.0f} MiB; the first and last ranges also carry "
                     f"{fp.first_bytes / 2**20:.0f} / {fp.last_bytes / 2**20:.0f} MiB)")


class Agent:
    def __init__(self, daemon, view, me: str, model: str, fp: Footprint, budget: Budget, settings, load):
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
        self.heal_after_s = settings.heal_after_s or 2 * settings.heartbeat_s
        self.load_s: list[float] = []
        self.move_parts: dict | None = None  # the last move's timeline: hysteresis, re-check, drain, load

    # ---- the shared view, as the pure functions take it
    def inputs(self, now: float | None = None):
        """(holders [(pid, start, end)], joiners, movers, moving {pid: target}) of the others, for our model:
        alive peers at or above the trust floor; a loading peer holds its range, a mover its target."""
        now = time.time() if now is None else now
        holders, joiners, movers, moving, loading = [], [], [], {}, {}
        for w in list(self.view.workers.values()):
            if w.peer_id == self.me or w.model != self.model or w.total_layers != self.fp.layers:
                continue
            if not self.view.heard_recently(w, now) or self.view.trust(w.peer_id) < self.s.trust_floor:
                continue
            b = budget_of(w.max_layers, w.memory_mib)
            if w.state == "joining":
                joiners.append(Joiner(w.peer_id, b))
            elif w.state == "draining" and w.target:
                holders.append((w.peer_id, *w.target))
                moving[w.peer_id] = tuple(w.target)
            elif w.state in ("serving", "loading") and w.has_range:
                holders.append((w.peer_id, w.start, w.end))
                if w.state == "loading":
                    loading[w.peer_id] = (w.start, w.end)
                elif w.auto:
                    movers.append(Mover(w.peer_id, w.start, w.end, b))
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
        d.set_state("joining")
        await trio.sleep(self.survey_s)  # a time window by nature: every serving worker heartbeats within it
        choice = self._place()
        self.range = choice.range
        d.set_state("loading")
        await trio.sleep(self.recheck_s)  # our announcement reaches the others, theirs reach us
        again = self._recheck(choice)
        if again is not None:
            choice = again
            self.range = choice.range
            d.set_state("loading")
        self.decide(f"placed at layers {choice.start}:{choice.end}: {choice.reason}")
        await self._load(choice.range)
        d.nudge.fast_s = None
        d.set_state("serving")

    def _recheck(self, choice: Choice) -> Choice | None:
        """After announcing: joiners that did not see each other may have chosen overlapping ranges while a
        hole stays open. Only the one with the larger peer id moves (so the two never swap back and forth),
        and it places around the ranges now committed (loading or serving), not around joiners."""
        holders, _, _, _, loading = self.inputs()
        committed = [(a, b) for _, a, b in holders]
        rivals = sorted(p for p, (a, b) in loading.items() if p < self.me and a < choice.end and choice.start < b)
        if not rivals or not holes(self.fp.layers, committed + [choice.range]):
            return None
        again = choose(self.fp, committed, self.budget, self.me)
        if again is None or again.range == choice.range:
            return None
        self.decide(f"re-placed: {rivals[0][-8:]} (smaller peer id) also chose layers overlapping "
                    f"{choice.start}:{choice.end} and a hole is open")
        return again

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

    async def heal_once(self) -> bool:
        """One look at the coverage; True if this worker moved."""
        if self.daemon.state != "serving" or self.range is None:
            return False
        now = time.monotonic()
        holders, joiners, movers, moving, _ = self.inputs()
        mine = (self.me, *self.range)
        ranges = [(a, b) for _, a, b in holders + [mine]]
        planned = [c.range for c in place(self.fp, ranges, joiners).values()]  # joiners fill holes first
        if not holes(self.fp.layers, ranges + planned):
            self.hole_since = None
            return False
        if self.hole_since is None:
            self.hole_since = now
        if now - self.hole_since < self.heal_after_s:
            return False
        if self.last_move is not None and now - self.last_move < self.s.move_window_s:
            return False
        plan = heal(self.fp, holders + [mine], movers + [Mover(self.me, *self.range, self.budget)])
        if self.me not in plan:
            return False
        choice = plan[self.me]
        t0 = time.monotonic()
        self.daemon.set_state("draining", choice.range)  # announce first, then re-check
        await trio.sleep(self.recheck_s)
        _, _, _, moving, _ = self.inputs()
        rival = sorted(p for p, t in moving.items() if p < self.me and t[0] < choice.end and choice.start < t[1])
        if rival:
            self.decide(f"stood down: {rival[0][-8:]} (smaller peer id) is moving to heal the same hole")
            self.daemon.set_state("serving")
            return False
        self.decide(f"moving {self.range[0]}:{self.range[1]} -> {choice.start}:{choice.end}: {choice.reason}")
        t1 = time.monotonic()
        cut = await self.daemon.drain(self.s.drain_s, choice.range)
        t2 = time.monotonic()
        if cut:
            self.decide(f"drain bound {self.s.drain_s:g}s cut {cut} session(s) (told `draining`, not blamed)")
        self.daemon.install(None)
        self.range = choice.range
        self.daemon.set_state("loading")
        await self._load(choice.range)
        self.moves += 1
        self.last_move = time.monotonic()
        self.move_parts = {"hole_seen_s": round(t0 - self.hole_since, 2), "recheck_s": round(t1 - t0, 2),
                           "drain_s": round(t2 - t1, 2), "load_s": round(self.load_s[-1], 2)}
        self.hole_since = None
        self.daemon.set_state("serving")
        return True
