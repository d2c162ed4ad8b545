"""How late the event loop wakes up: a probe sleeps PROBE_S and records the overshoot. A daemon whose loop is
stalled (a long computation on it, a flood of work) shows it here, in its status file, before its peers time
out on it. Samples are kept for WINDOW_S (the recent maximum) besides the maximum since start. A trio
instrument also times every task step in CPU time (thread time: on a busy machine a step's wall time also
counts the wait for a core): the slowest recent one, and which task took it, says where the loop was held."""

from __future__ import annotations

import time
from collections import deque

import trio
import trio.abc

PROBE_S = 0.05
WINDOW_S = 10.0


def where(task) -> str:
    """Where a task's step ended (the await it stopped at): the last few of its coroutines' lines."""
    out = []
    coro = task.coro
    while coro is not None and len(out) < 16:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None) or getattr(coro, "ag_frame", None)
        if frame is not None:
            out.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_lineno}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return " > ".join(out[-5:])


class _Steps(trio.abc.Instrument):
    """The slowest task step since the last read (its duration and the task's name)."""

    def __init__(self):
        self.t0 = 0.0
        self.task = None  # the task whose step began at t0
        self.slowest = (0.0, "")

    def before_task_step(self, task) -> None:
        self.t0, self.task = time.thread_time(), task

    def after_task_step(self, task) -> None:
        if task is not self.task:  # the step that added this instrument: its start was not seen
            return
        ms = (time.thread_time() - self.t0) * 1e3
        if ms > self.slowest[0]:
            self.slowest = (ms, f"{task.name} at {where(task)}")


class LoopLag:
    def __init__(self):
        self.max_ms = 0.0
        self._recent: deque[tuple[float, float]] = deque()  # (time, lag ms)
        self._steps = _Steps()
        self.slowest_step = (0.0, "")  # over the last window

    async def run(self) -> None:
        trio.lowlevel.add_instrument(self._steps)
        try:
            await self._probe()
        finally:
            trio.lowlevel.remove_instrument(self._steps)

    async def _probe(self) -> None:
        window_end = trio.current_time() + WINDOW_S
        while True:
            t0 = trio.current_time()
            await trio.sleep(PROBE_S)
            now = trio.current_time()
            lag = max(0.0, (now - t0 - PROBE_S) * 1e3)
            self.max_ms = max(self.max_ms, lag)
            self._recent.append((now, lag))
            while self._recent and self._recent[0][0] < now - WINDOW_S:
                self._recent.popleft()
            if now >= window_end or self._steps.slowest[0] > self.slowest_step[0]:
                if now >= window_end:
                    window_end = now + WINDOW_S
                self.slowest_step, self._steps.slowest = self._steps.slowest, (0.0, "")

    def status(self) -> dict:
        return {"max_ms": round(self.max_ms, 1),
                "recent_max_ms": round(max((lag for _, lag in self._recent), default=0.0), 1),
                "slowest_step_cpu_ms": round(self.slowest_step[0], 1),
                "slowest_task": self.slowest_step[1][-300:]}
