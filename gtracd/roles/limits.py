"""A worker's per-peer limits on shared resources (trio): bytes of frames in flight and the compute slot.

Together with the session table's fair share (sessions.py) and the per-peer stream cap (roles/worker.py),
these keep one flooding peer from starving others: its frames wait on its own budget, and its calls queue
behind its own calls, not in front of everyone's. A full queue is answered `busy` (never blamed).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from contextlib import asynccontextmanager

import trio

from ..sessions import busy

PEER_INFLIGHT_BYTES = 128 << 20  # frames read but not yet served, per remote peer
TOTAL_INFLIGHT_BYTES = 512 << 20  # ... and overall


class InFlight:
    """Bytes of frames read but not yet served, per remote peer and overall. A reader over its peer's cap (or
    the total) waits before reading on, so TCP backpressure reaches the sender; one frame always fits (each
    is capped by the wire limits already)."""

    def __init__(self, per_peer: int = PEER_INFLIGHT_BYTES, total: int = TOTAL_INFLIGHT_BYTES):
        self.per_peer, self.total = per_peer, total
        self.by: dict[str, int] = {}
        self.sum = 0
        self._changed = trio.Event()

    def fits(self, peer: str, n: int) -> bool:
        """A peer with nothing in flight may always bring one frame (so a flood by others never starves it:
        the worst case is the total plus one frame per open stream); otherwise its cap and the total hold."""
        used = self.by.get(peer, 0)
        return used == 0 or (used + n <= self.per_peer and self.sum + n <= self.total)

    async def acquire(self, peer: str, n: int) -> None:
        while not self.fits(peer, n):
            await self._changed.wait()
        self.by[peer] = self.by.get(peer, 0) + n
        self.sum += n

    def release(self, peer: str, n: int) -> None:
        if n <= 0:
            return
        left = self.by.get(peer, 0) - n
        if left > 0:
            self.by[peer] = left
        else:
            self.by.pop(peer, None)
        self.sum -= n
        self._changed.set()
        self._changed = trio.Event()


class FairCompute:
    """One compute slot handed out round-robin across remote peers. Each peer may queue `per_peer` calls and
    all together `total`; beyond that the call is refused `busy` at once instead of waiting past the seeker's
    deadline (which would be a blamed timeout)."""

    def __init__(self, per_peer: int = 8, total: int = 64):
        self.per_peer, self.total = per_peer, total
        self.running = False
        self.queues: OrderedDict[str, deque[trio.Event]] = OrderedDict()
        self.waiting = 0
        self.refused = 0

    @asynccontextmanager
    async def slot(self, peer: str):
        if not self.running and self.waiting == 0:
            self.running = True
        else:
            q = self.queues.get(peer)
            if (q is not None and len(q) >= self.per_peer) or self.waiting >= self.total:
                self.refused += 1
                raise busy("compute queue full for your peer (or in total)")
            ev = trio.Event()
            self.queues.setdefault(peer, deque()).append(ev)
            self.waiting += 1
            try:
                await ev.wait()
            except BaseException:
                if ev.is_set():  # handed the slot as we were cancelled: pass it on
                    self._next()
                else:
                    q = self.queues[peer]
                    q.remove(ev)
                    self.waiting -= 1
                    if not q:
                        del self.queues[peer]
                raise
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        """Hand the slot to the next peer in turn (its oldest call), or free it."""
        if not self.queues:
            self.running = False
            return
        peer, q = next(iter(self.queues.items()))
        ev = q.popleft()
        self.waiting -= 1
        if q:
            self.queues.move_to_end(peer)
        else:
            del self.queues[peer]
        ev.set()


class _Waiting:
    __slots__ = ("job", "result", "error", "done")

    def __init__(self, job):
        self.job = job
        self.result = self.error = None
        self.done = trio.Event()


class Batcher:
    """Continuous batching of decode steps (engine/batching.py) over the one compute slot. A step waits for the
    slot in its peer's turn like any call (FairCompute); whichever waiting step gets the slot first computes
    every step then pending on its shard server (up to `max_batch`) in one forward pass and hands each its
    result. A step served that way stops waiting for the slot at once. Steps that arrive while a pass runs
    form the next one: sessions join and leave the batch between any two steps."""

    def __init__(self, compute: FairCompute, max_batch: int):
        self.compute, self.max_batch = compute, max_batch
        self.pending: dict[int, list[_Waiting]] = {}  # id(shard server) -> steps waiting, oldest first

    async def step(self, peer: str, srv, job) -> dict:
        w = _Waiting(job)
        queue = self.pending.setdefault(id(srv), [])
        queue.append(w)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._lead, peer, srv, w)
                await w.done.wait()
                nursery.cancel_scope.cancel()  # served by another step's pass: stop queueing for the slot
        finally:
            if w in queue:
                queue.remove(w)
            if not queue:
                self.pending.pop(id(srv), None)
        if w.error is not None:
            raise w.error
        return w.result

    async def _lead(self, peer: str, srv, w: _Waiting) -> None:
        try:
            await self._lead_pass(peer, srv, w)
        except Exception as e:  # e.g. `busy` from a full compute queue: the step's own answer, not a group's
            if not w.done.is_set():
                w.error = e
                w.done.set()

    async def _lead_pass(self, peer: str, srv, w: _Waiting) -> None:
        async with self.compute.slot(peer):
            await trio.lowlevel.checkpoint()  # steps whose frames arrived in this same tick join the pass
            if w.done.is_set():
                return
            queue = self.pending[id(srv)]
            batch = [w] + [x for x in queue if x is not w][:self.max_batch - 1]
            for x in batch:
                queue.remove(x)
            jobs = [x.job for x in batch]
            try:
                if len(jobs) == 1:  # a lone step: no thread hand-off (the schema caps a step's input)
                    results = srv.compute_batch(jobs)
                else:
                    results = await trio.to_thread.run_sync(srv.compute_batch, jobs)
            except Exception as e:  # every step of the pass gets the error (the worker answers `internal`)
                for x in batch:
                    x.error = e
                    x.done.set()
                return
            for x, res in zip(batch, results, strict=True):
                x.result = res
                x.done.set()
