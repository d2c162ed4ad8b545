"""Issue 23, item 2: a worker enforces what it announced and no peer's work pushes another's past a deadline
the worker accepted: a long prefill is computed in parts, one per turn of the compute slot, so another peer's
step goes between them; a stream that ends stops it; sessions are granted at most the worker's max_length."""

from __future__ import annotations

import os
import threading

import pytest

torch = pytest.importorskip("torch")

import trio  # noqa: E402

from gtracd.config import load_settings  # noqa: E402
from gtracd.engine import set_threads  # noqa: E402
from gtracd.engine.server import PREFILL_CHUNK, ShardServer  # noqa: E402
from gtracd.engine.tensors import from_wire  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.hop import HopSession  # noqa: E402
from gtracd.net.host import dial, multiaddr_of, running_host  # noqa: E402
from gtracd.net.protocols import INFER  # noqa: E402
from gtracd.wire.tensor import decode_tensor  # noqa: E402
from gtracd.worker.main import Served, WorkerDaemon  # noqa: E402

from .models import tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(120)]


def test_a_prefill_in_parts_equals_one_pass(tmp_path):
    set_threads(1)
    folder = tiny_llama(tmp_path / "tiny", layers=4)
    n = 2 * PREFILL_CHUNK + 37
    prompt = [(7 * i) % 250 + 3 for i in range(n)]
    out = {}
    for (a, b) in ((0, 2), (2, 4)):
        srv = ShardServer(folder, a, b, max_length=4096)
        for how in ("one", "parts"):
            sid = os.urandom(16)
            srv.open({"session": sid, "model": srv.fingerprint, "start": a, "end": b, "max_length": 4096})
            body = {"session": sid, "pos": 0}
            body.update({"tokens": prompt} if a == 0 else {"hidden": decode_tensor(out[(0, "one")]["hidden"])})
            job = srv.prepare(body)
            if how == "one":
                out[(a, how)] = srv.compute(job)
            else:
                parts = srv.split(job)
                assert len(parts) == 3 and sum(p.n for p in parts) == n
                out[(a, how)] = srv.assemble(job, [srv.compute_part(p) for p in parts])
    h1, h2 = (from_wire(decode_tensor(out[(0, k)]["hidden"])) for k in ("one", "parts"))
    assert h1.shape == h2.shape and torch.allclose(h1, h2, atol=1e-4, rtol=1e-4)
    assert out[(2, "one")]["token"] == out[(2, "parts")]["token"]


def test_sessions_are_granted_at_most_the_workers_max_length(tmp_path):
    srv = ShardServer(tiny_llama(tmp_path / "tiny", layers=2), 0, 2, max_length=128)
    sid = os.urandom(16)
    res = srv.open({"session": sid, "model": srv.fingerprint, "start": 0, "end": 2, "max_length": 49_152})
    assert res["max_length"] == 128


async def test_another_peers_step_goes_between_the_parts_of_a_long_prefill(tmp_path):
    set_threads(1)
    folder = tiny_llama(tmp_path / "tiny", layers=2)
    srv = ShardServer(folder, 0, 2, max_length=4096)
    order: list[str] = []
    gate = {"started": threading.Event(), "go": threading.Event()}
    real_part, real_compute = srv.compute_part, srv.compute

    def gated_part(part):  # the first part of a prefill waits until the test lets it finish
        if not gate["started"].is_set():
            gate["started"].set()
            assert gate["go"].wait(30)
        order.append("part")
        return real_part(part)

    def compute(job):
        order.append(f"call{job.n}")
        return real_compute(job)
    srv.compute_part, srv.compute = gated_part, compute
    ident = Identity.generate()
    daemon = WorkerDaemon([Served(ident, srv, "w")], ident.peer_id,
                          load_settings(flags={"data_dir": str(tmp_path), "max_batch": 1}), "w")
    async with running_host(ident) as whost, running_host(Identity.generate()) as attacker, \
            running_host(Identity.generate()) as honest:
        whost.set_stream_handler(INFER, daemon.handle)

        async def session(host):
            pid = await dial(host, multiaddr_of(whost)[0])
            hs, sid = HopSession(host, pid, ident.peer_id), os.urandom(16)
            await hs.open({"session": sid, "model": srv.fingerprint, "start": 0, "end": 2, "max_length": 4096}, 10)
            return hs, sid

        with trio.fail_after(60):
            hs_b, sid_b = await session(honest)
            await hs_b.request("prefill", {"session": sid_b, "pos": 0, "tokens": [5, 6, 7]}, 10)
            hs_a, sid_a = await session(attacker)
            long = [(3 * i) % 250 + 3 for i in range(4 * PREFILL_CHUNK)]
            got = {}

            async def prefill():
                got["a"] = await hs_a.request("prefill", {"session": sid_a, "pos": 0, "tokens": long}, 30)

            async def step():
                got["b"] = await hs_b.request("step", {"session": sid_b, "pos": 3, "tokens": [9]}, 10)
                order.append("b-answered")

            async with trio.open_nursery() as n:
                n.start_soon(prefill)
                await trio.to_thread.run_sync(gate["started"].wait, 30)  # the first part holds the slot
                n.start_soon(step)
                await until(lambda: daemon.compute.waiting > 0, 30, "the honest step queued for the slot",
                            step=0.01)
                gate["go"].set()
            assert got["a"]["cached"] == len(long)
            assert order.index("b-answered") < len(order) - 1 and order[-1] == "part"  # b before the last part
            # a stream that ends stops a prefill between parts
            gate.update(started=threading.Event(), go=threading.Event())
            hs_c, sid_c = await session(attacker)
            order.clear()
            async with trio.open_nursery() as n:
                async def doomed():
                    try:
                        await hs_c.request("prefill", {"session": sid_c, "pos": 0, "tokens": long}, 30)
                    except Exception:
                        pass
                n.start_soon(doomed)
                await trio.to_thread.run_sync(gate["started"].wait, 30)
                await hs_c.abort()
                await until(lambda: any(ws.gone for ws, _ in daemon.conns.values()), 30, "the worker saw the reset",
                            step=0.01)
                gate["go"].set()
            await until(lambda: order and not daemon.compute.running, 30, "the prefill stopped", step=0.01)
            assert order.count("part") == 1  # only the part that had started
