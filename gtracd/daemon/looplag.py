"""How late the event loop wakes up: a probe sleeps PROBE_S and records the overshoot. A daemon whose loop is
stalled (a long computation on it, a flood of work) shows it here, in its status file, before its peers time
out on it. Samples are kept for WINDOW_S (the recent maximum) besides the maximum since start."""

from __future__ import annotations

from collections import deque

import trio

PROBE_S = 0.05
WINDOW_S = 10.0


class LoopLag:
    def __init__(self):
        self.max_ms = 0.0
        self._recent: deque[tuple[float, float]] = deque()  # (time, lag ms)

    async def run(self) -> None:
        while True:
            t0 = trio.current_time()
            await trio.sleep(PROBE_S)
            now = trio.current_time()
            lag = max(0.0, (now - t0 - PROBE_S) * 1e3)
            self.max_ms = max(self.max_ms, lag)
            self._recent.append((now, lag))
            while self._recent and self._recent[0][0] < now - WINDOW_S:
                self._recent.popleft()

    def status(self) -> dict:
        return {"max_ms": round(self.max_ms, 1),
                "recent_max_ms": round(max((lag for _, lag in self._recent), default=0.0), 1)}
