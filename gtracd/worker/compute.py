"""A worker's per-peer limits on shared resources (trio): bytes of frames in flight and the compute slot.

Together with the session table's fair share (protocols/sessions.py) and the per-peer stream cap (worker/main.py),
these keep one flooding peer from starving others: its frames wait on its own budget, and its calls queue
behind its own calls, not in front of everyone's. A full queue is answered `busy` (never blamed).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from contextlib import asynccontextmanager

import trio

from ..protocols.sessions import busy

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


class _Shard:
    """One shard server's steps: the ones waiting (oldest first), and when each session last stepped."""

    def __init__(self):
        self.queue: list[_Waiting] = []
        self.last_step: dict[object, float] = {}  # session -> monotonic time of its last step
        self.arrived = trio.Event()  # set (and replaced) whenever a step joins the queue


class Batcher:
    """Continuous batching of decode steps (engine/batching.py) over the one compute slot.

    Steps of concurrent generations arrive spread out, and on an idle worker each would run alone, while a
    pass of B rows costs far less than B passes of one (the weights are read once: a pass of 8 SmolLM2 rows
    takes 2-3 times a pass of one on this CPU). So a step first gathers
    the others: on the worker hosting layer 0 (the gate, where every step starts) it waits, at most `gate_s`,
    until every session decoding there (each stepped within ACTIVE_S) has brought its step; on a later hop,
    where a batch's rows arrive one by one, it gathers while they keep coming (a gap of QUIET_S ends it), at
    most `wait_s`. Concurrent generations so move as one batch through every hop. Then the step waits for the
    slot in its peer's turn like any call (FairCompute); whichever waiting step gets the slot first computes
    every step then pending on its shard (up to `max_batch`) in one forward pass and hands each its result,
    and a step served that way stops waiting at once. A lone generation never waits; a session that ends is
    no longer waited for (`forget`); sessions join and leave the batch between any two steps."""

    ACTIVE_S = 0.5  # a session that stepped within this is decoding: expected back
    QUIET_S = 0.005  # a later hop stops gathering when no row came for this long

    def __init__(self, compute: FairCompute, max_batch: int, wait_s: float = 0.0, gate_s: float | None = None):
        self.compute, self.max_batch, self.wait_s = compute, max_batch, wait_s
        self.gate_s = wait_s if gate_s is None else gate_s  # the wait on a shard hosting layer 0
        self.shards: dict[int, _Shard] = {}  # id(shard server) -> its steps

    @property
    def pending(self) -> dict[int, list[_Waiting]]:
        return {k: sh.queue for k, sh in self.shards.items() if sh.queue}

    async def step(self, peer: str, srv, job, session) -> dict:
        """Compute `job` (a decode step of `session` on shard server `srv`) in a pass with whatever else is
        ready; returns its result."""
        w = _Waiting(job)
        sh = self.shards.setdefault(id(srv), _Shard())
        now = trio.current_time()  # (monotonic)
        for s, t in list(sh.last_step.items()):
            if now - t > self.ACTIVE_S:
                del sh.last_step[s]
        sh.last_step[session] = now
        sh.queue.append(w)
        sh.arrived.set()
        sh.arrived = trio.Event()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._lead, peer, srv, w, sh)
                await w.done.wait()
                nursery.cancel_scope.cancel()  # served by another step's pass: stop waiting
        finally:
            if w in sh.queue:
                sh.queue.remove(w)
            if not sh.queue and not sh.last_step and self.shards.get(id(srv)) is sh:
                del self.shards[id(srv)]
        if w.error is not None:
            raise w.error
        return w.result

    def forget(self, srv, session) -> None:
        """`session` ended: no step waits for it any more."""
        sh = self.shards.get(id(srv))
        if sh is not None:
            sh.last_step.pop(session, None)
            sh.arrived.set()
            sh.arrived = trio.Event()
            if not sh.queue and not sh.last_step:
                del self.shards[id(srv)]

    async def _lead(self, peer: str, srv, w: _Waiting, sh: _Shard) -> None:
        try:
            expected = min(len(sh.last_step), self.max_batch)
            if getattr(getattr(srv, "shard", None), "first", False):  # the gate: a step starts here
                if self.gate_s > 0:
                    with trio.move_on_after(self.gate_s):
                        while len(sh.queue) < expected and not w.done.is_set():
                            await sh.arrived.wait()
            elif self.wait_s > 0:  # a later hop: a batch's rows come one by one; gather them while they come
                with trio.move_on_after(self.wait_s):
                    while len(sh.queue) < expected and not w.done.is_set():
                        with trio.move_on_after(self.QUIET_S) as quiet:
                            await sh.arrived.wait()
                        if quiet.cancelled_caught:
                            break
            await self._lead_pass(peer, srv, w, sh)
        except Exception as e:  # e.g. `busy` from a full compute queue: the step's own answer, not a group's
            if not w.done.is_set():
                w.error = e
                w.done.set()

    async def _lead_pass(self, peer: str, srv, w: _Waiting, sh: _Shard) -> None:
        async with self.compute.slot(peer):
            if w.done.is_set():
                return
            batch = [w] + [x for x in sh.queue if x is not w][:self.max_batch - 1]
            for x in batch:
                sh.queue.remove(x)
            jobs = [x.job for x in batch]
            try:
                if len(sh.last_step) <= 1:  # a lone generation: inline, no thread hand-off (~1.5 ms a hop)
                    results = srv.compute_batch(jobs)
                else:  # on the compute thread: meanwhile the event loop reads the next steps' frames
                    results = await trio.to_thread.run_sync(srv.compute_batch, jobs)
            except Exception as e:  # every step of the pass gets the error (the worker answers `internal`)
                for x in batch:
                    x.error = e
                    x.done.set()
                return
            for x, res in zip(batch, results, strict=True):
                x.result = res
                x.done.set()
