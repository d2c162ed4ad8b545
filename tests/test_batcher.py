"""The worker's continuous batching over its one compute slot (worker/compute.Batcher), with a stand-in shard
server: steps waiting together form one pass; each gets its own result; a step cancelled while it waits
leaves the batch; a failing pass fails every step in it; a lone step runs alone; a full queue says busy."""

from __future__ import annotations

import pytest
import trio

from gtracd.protocols.sessions import Refused
from gtracd.worker.compute import Batcher, FairCompute

pytestmark = pytest.mark.timeout(30)


class Server:
    def __init__(self, fail: bool = False):
        self.passes: list[list[int]] = []
        self.fail = fail

    def compute_batch(self, jobs):
        self.passes.append(list(jobs))
        if self.fail:
            raise RuntimeError("kernel exploded")
        return [{"echo": j} for j in jobs]


async def _until(pred):
    with trio.fail_after(5):
        while not pred():
            await trio.sleep(0)


async def test_steps_waiting_together_share_one_pass_and_get_their_own_results():
    compute = FairCompute()
    b, srv = Batcher(compute, max_batch=16), Server()
    got = {}

    async def one(k):
        got[k] = await b.step(f"peer{k % 3}", srv, k, k)

    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):  # the slot is busy: steps arrive and wait
            for k in range(8):
                n.start_soon(one, k)
            await _until(lambda: len(b.pending.get(id(srv), [])) == 8)
    assert [sorted(p) for p in srv.passes] == [list(range(8))]
    assert got == {k: {"echo": k} for k in range(8)} and b.pending == {}


async def test_a_pass_takes_at_most_max_batch_and_the_rest_forms_the_next():
    compute = FairCompute()
    b, srv = Batcher(compute, max_batch=3), Server()
    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):
            for k in range(7):
                n.start_soon(b.step, "p", srv, k, k)
            await _until(lambda: len(b.pending.get(id(srv), [])) == 7)
    assert sorted(len(p) for p in srv.passes) == [1, 3, 3] and sorted(sum(srv.passes, [])) == list(range(7))


async def test_a_step_cancelled_while_waiting_leaves_the_batch():
    compute = FairCompute()
    b, srv = Batcher(compute, max_batch=16), Server()
    scopes = {}

    async def one(k):
        with trio.CancelScope() as scopes[k]:
            await b.step("p", srv, k, k)

    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):
            for k in range(4):
                n.start_soon(one, k)
            await _until(lambda: len(b.pending.get(id(srv), [])) == 4)
            scopes[2].cancel()  # its stream closed
            await _until(lambda: len(b.pending.get(id(srv), [])) == 3)
    assert [sorted(p) for p in srv.passes] == [[0, 1, 3]] and b.pending == {}


async def test_a_failing_pass_fails_every_step_in_it_and_a_lone_step_runs_alone():
    compute = FairCompute()
    b, bad = Batcher(compute, max_batch=16), Server(fail=True)
    errors = []

    async def one(k):
        try:
            await b.step("p", bad, k, k)
        except RuntimeError as e:
            errors.append(str(e))

    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):
            for k in range(3):
                n.start_soon(one, k)
            await _until(lambda: len(b.pending.get(id(bad), [])) == 3)
    assert errors == ["kernel exploded"] * 3 and [sorted(p) for p in bad.passes] == [[0, 1, 2]]
    good = Server()
    assert await b.step("p", good, 9, 9) == {"echo": 9} and good.passes == [[9]]


async def test_steps_of_two_shards_never_share_a_pass():
    compute = FairCompute()
    b, s1, s2 = Batcher(compute, max_batch=16), Server(), Server()
    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):
            for k in range(4):
                n.start_soon(b.step, "p", s1 if k % 2 else s2, k, k)
            await _until(lambda: sum(len(q) for q in b.pending.values()) == 4)
    assert [sorted(p) for p in s1.passes] == [[1, 3]] and [sorted(p) for p in s2.passes] == [[0, 2]]


async def test_a_full_compute_queue_answers_busy_not_a_group_of_errors():
    compute = FairCompute(per_peer=1, total=64)
    b, srv = Batcher(compute, max_batch=16), Server()
    outcome = []

    async def one(k):
        try:
            outcome.append(await b.step("p", srv, k, k))
        except Refused as e:
            outcome.append(e.code)

    async with trio.open_nursery() as n:
        async with compute.slot("prefill"):
            for k in range(3):
                n.start_soon(one, k)
            await _until(lambda: len(outcome) == 2)  # one waiter per peer may queue: the others hear busy at once
    assert outcome[:2] == ["busy", "busy"] and outcome[2] in ({"echo": k} for k in range(3))


class Gate(Server):
    """A shard server hosting layer 0."""

    class shard:
        first = True


@pytest.mark.parametrize("gate", [True, False], ids=["layer-0", "later-hop"])
async def test_a_step_gathers_the_other_decoding_sessions_and_a_lone_one_never_waits(mock_clock, gate, monkeypatch):
    mock_clock.autojump_threshold = 0.05  # virtual time jumps once nothing has run for 50 ms of real time...

    async def inline(fn, *a):  # ...a pass on a thread included: on a loaded machine one may take that long
        return fn(*a)

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    compute = FairCompute()
    b = Batcher(compute, max_batch=16, wait_s=0.02, gate_s=0.2)
    srv = Gate() if gate else Server()
    t0 = trio.current_time()
    for k in range(3):  # one generation alone: no waiting at all
        await b.step("p", srv, k, "a")
    assert trio.current_time() == t0 and srv.passes == [[0], [1], [2]]
    await trio.sleep(1)  # "a" went quiet: it is no longer expected
    srv.passes.clear()
    t0 = trio.current_time()
    await b.step("p", srv, 10, "b")
    await b.step("p", srv, 11, "c")  # "b" stepped just now and is expected back: "c" waits for it in vain
    waited = trio.current_time() - t0
    assert waited == pytest.approx(0.2 if gate else Batcher.QUIET_S) and srv.passes == [[10], [11]]

    async def later(job, session, delay):
        await trio.sleep(delay)
        await b.step("p", srv, job, session)

    t0 = trio.current_time()
    async with trio.open_nursery() as n:  # both decoding: the first gathers the second, one pass of two
        n.start_soon(later, 12, "b", 0.0)
        n.start_soon(later, 13, "c", 0.003)
    assert trio.current_time() - t0 == pytest.approx(0.003) and [sorted(p) for p in srv.passes[2:]] == [[12, 13]]
    b.forget(srv, "b")  # "b" ended: "c" alone no longer waits for anyone
    t0 = trio.current_time()
    await b.step("p", srv, 14, "c")
    assert trio.current_time() == t0
