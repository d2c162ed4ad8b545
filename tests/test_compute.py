"""The worker's compute slot and bytes in flight (worker/compute.py): shared fairly, never leaked."""

from __future__ import annotations

import pytest

from gtracd.protocols.sessions import Refused


async def test_bytes_in_flight_are_capped_per_peer_and_overall():
    import trio

    from gtracd.worker.compute import InFlight

    f = InFlight(per_peer=100, total=150)
    await f.acquire("a", 60)
    await f.acquire("a", 40)
    with trio.move_on_after(0.05) as cs:
        await f.acquire("a", 1)  # a is at its cap: waits
    assert cs.cancelled_caught
    await f.acquire("b", 50)  # another peer still fits under the total
    got = trio.Event()

    async def more_b():
        await f.acquire("b", 10)  # over the total until a releases
        got.set()

    async with trio.open_nursery() as n:
        n.start_soon(more_b)
        await trio.testing.wait_all_tasks_blocked()
        assert not got.is_set()
        f.release("a", 60)
        with trio.fail_after(1):
            await got.wait()
    assert f.by == {"a": 40, "b": 60} and f.sum == 100
    f.release("a", 40)
    f.release("b", 60)
    await f.acquire("c", 10_000)  # with nothing in flight one frame always fits (frames are capped by the wire)


async def test_compute_is_shared_round_robin_and_a_full_queue_is_busy_not_a_wait():
    import trio

    from gtracd.worker.compute import FairCompute

    fc = FairCompute(per_peer=3, total=5)
    order: list[str] = []
    gate = trio.Event()

    async def call(peer: str, started=None):
        async with fc.slot(peer):
            if started is not None:
                started.set()
                await gate.wait()
            order.append(peer)

    async with trio.open_nursery() as n:
        first = trio.Event()
        n.start_soon(call, "flood", first)
        await first.wait()  # the flood holds the slot; it queues 3 more, then the honest peer asks once
        for _ in range(3):
            n.start_soon(call, "flood")
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(call, "honest")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(Refused) as e:
            async with fc.slot("flood"):  # its own queue is full: refused at once
                pass
        assert e.value.code == "busy" and e.value.retry_after_s > 0
        gate.set()
    assert order[:2] == ["flood", "flood"] and order.index("honest") == 2  # served right after one flood call
    assert not fc.running and fc.waiting == 0 and not fc.queues


async def test_a_cancelled_waiter_never_leaks_the_compute_slot():
    import trio

    from gtracd.worker.compute import FairCompute

    fc = FairCompute()
    gate = trio.Event()

    async def hold():
        async with fc.slot("a"):
            await gate.wait()

    async with trio.open_nursery() as n:
        n.start_soon(hold)
        await trio.testing.wait_all_tasks_blocked()
        with trio.move_on_after(0.02):
            async with fc.slot("b"):
                pass
        gate.set()
    async with fc.slot("c"):  # free again
        pass
    assert not fc.running and fc.waiting == 0
