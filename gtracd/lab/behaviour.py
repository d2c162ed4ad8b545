"""What a virtual peer does on each stage of a request (pure: the caller passes the clock and the rng).

A stage is one call of the peer: the prefill, or one decode step. On each stage the peer
- waits its network delay (`net_delay_ms` x time scale, growing over time for a degrading peer),
- fails with probability `fail_rate`: the stage stalls (no answer) until the seeker's deadline catches it,
  as in the paper; the worker gives up after `stall_s` and answers an error nobody is waiting for,
- computes: the real shard runs, and the peer also takes the time the paper's model would have taken on
  its host (`compute_ms_per_layer` x its layers x its host type's speed, x time scale) — the paper's replicas
  share one physical GPT-2 Large shard per host, so compute dominates a hop there, not the injected delay,
- burns `cpu_load` x cpu_unit_ms x time scale of real CPU,
- a byzantine peer perturbs its output with probability `byzantine_rate`;
- a crash peer is gone for good after `crash_after_requests` sessions or `crash_at_s` seconds; a flapping peer
  is gone `flap_down_s` out of every `flap_period_s`. A gone peer stops heartbeating, refuses new sessions and
  breaks the transport of sessions in flight.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from .plan import PlanRow


@dataclass
class Action:
    delay_s: float = 0.0
    stall: bool = False
    stall_s: float = 30.0
    burn_s: float = 0.0
    corrupt: object = None  # callable(result dict) -> None, set by the host for a lying stage
    gone: bool = False
    refuse: str | None = None  # after the delay, answer this error code instead of computing (an excuse)


class Behaviour:
    def __init__(self, row: PlanRow, time_scale: float, speed: float, cpu_unit_ms: float, start: float,
                 rng: random.Random, corrupt=None, stall_s: float = 30.0, compute_ms_per_layer: float = 0.0):
        self.row = row
        self.scale = time_scale
        self.speed = speed
        self.cpu_unit_ms = cpu_unit_ms
        self.compute_ms = compute_ms_per_layer * (row.end - row.start) * speed
        self.t0 = start
        self.rng = rng
        self.corrupt_fn = corrupt
        self.stall_s = stall_s
        self.sessions = 0
        self.crashed = False
        self.counts = {"stages": 0, "stalls": 0, "lies": 0, "gone": 0}

    def _x(self, name: str, default=None):
        return self.row.extra.get(name, default)

    def alive(self, now: float) -> bool:
        """Heartbeating and taking new sessions. A crash peer that served its n sessions is gone."""
        n = self._x("crash_after_requests")
        if n is not None and self.sessions >= n:
            self.crashed = True
        return not self.crashed and self._up(now)

    def _up(self, now: float) -> bool:
        """Not crashed by time and not in a flapping peer's down phase (what a stage in flight sees)."""
        at = self._x("crash_at_s")
        if at is not None and now - self.t0 >= at * self.scale:
            self.crashed = True
            return False
        period, down = self._x("flap_period_s"), self._x("flap_down_s")
        if period and down:
            phase = ((now - self.t0) / self.scale) % period
            return phase < period - down
        return True

    def opened(self) -> None:
        """A session was opened on this peer (counts towards crash_after_requests)."""
        self.sessions += 1

    def delay_ms(self, now: float) -> float:
        base = self.row.net_delay_ms
        growth = self._x("delay_growth_per_min")
        if growth:
            base *= 1.0 + growth * (now - self.t0) / self.scale / 60.0
        return base

    def decide(self, kind: str, now: float) -> Action:
        self.counts["stages"] += 1
        if not self._up(now):
            self.counts["gone"] += 1
            return Action(gone=True)
        a = Action(delay_s=(self.delay_ms(now) + self.compute_ms) * self.scale / 1e3, stall_s=self.stall_s,
                   burn_s=self.row.cpu_load * self.cpu_unit_ms * self.scale / 1e3)
        if self.rng.random() < self.row.fail_rate:
            a.stall = True
            self.counts["stalls"] += 1
            return a
        lie = self._x("byzantine_rate")
        if lie and self.rng.random() < lie and self.corrupt_fn is not None:
            a.corrupt = self.corrupt_fn
            self.counts["lies"] += 1
        return a
