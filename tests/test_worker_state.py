"""One owner for worker state: the session table and the sessions dict change only on the worker's event loop
(open, close, prepare), never on the compute thread, while many sessions open, prefill, step, cancel and
close at once and heartbeats and status read the table at full speed."""

from __future__ import annotations

import os
import random
import threading

import pytest
import trio

pytest.importorskip("torch")

from gtracd.config import load_settings  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.hop import HopError, HopFailed, HopSession  # noqa: E402
from gtracd.net.host import multiaddr_of, running_host  # noqa: E402
from gtracd.net.protocols import INFER  # noqa: E402

from .models import tiny_llama  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(180)]
MUTATORS = ("open", "reserve", "touch", "close", "expire", "_evict")


async def test_table_mutations_stay_on_the_event_loop_under_concurrent_sessions_and_status_reads(tmp_path):
    from gtracd.engine import set_threads
    from gtracd.engine.server import ShardServer
    from gtracd.net.host import dial
    from gtracd.worker.main import Served, WorkerDaemon

    set_threads(1)
    folder = tiny_llama(tmp_path / "tiny", layers=4)
    srv = ShardServer(folder, 0, 4, max_sessions=6, cache_tokens=600)  # small: evictions happen too
    loop_thread = threading.get_ident()
    off_loop: list[str] = []
    for name in MUTATORS:  # record any mutation made off the event loop's thread
        real = getattr(srv.table, name)

        def spy(*a, _real=real, _name=name, **kw):
            if threading.get_ident() != loop_thread:
                off_loop.append(_name)
            return _real(*a, **kw)

        setattr(srv.table, name, spy)
    ident = Identity.generate()
    s = load_settings(flags={"data_dir": str(tmp_path)})
    daemon = WorkerDaemon([Served(ident, srv, "w")], ident.peer_id, s, "w")
    rng = random.Random(7)
    stats = {"results": 0, "refused": 0, "reads": 0}

    async with running_host(ident) as whost, running_host(Identity.generate()) as chost:
        whost.set_stream_handler(INFER, daemon.handle)
        addr = multiaddr_of(whost)[0]
        pid = await dial(chost, addr)

        async def session(k: int) -> None:
            for _ in range(4):
                hs = HopSession(chost, pid, ident.peer_id)
                sid = os.urandom(16)
                try:
                    await hs.open({"session": sid, "model": srv.fingerprint, "start": 0, "end": 4,
                                   "max_length": 200}, 10)
                    toks = [rng.randrange(1, 200) for _ in range(rng.randrange(2, 40))]
                    await hs.request("prefill", {"session": sid, "pos": 0, "tokens": toks}, 30)
                    pos = len(toks)
                    for _ in range(rng.randrange(1, 8)):
                        res = await hs.request("step", {"session": sid, "pos": pos, "tokens": [5]}, 30)
                        pos += 1
                        stats["results"] += 1
                        assert res["cached"] == pos
                    if rng.random() < 0.3:
                        await hs.cancel(sid)
                    else:
                        await hs.close(sid)
                except (HopError, HopFailed):  # busy / evicted under the small budget: refused, never broken
                    stats["refused"] += 1
                    await hs.abort()

        async def status_reader(done: trio.Event) -> None:  # heartbeat + status, at full speed
            while not done.is_set():
                srv.info(ident.peer_id, "w", "x")
                assert 0 <= srv.table.free_tokens <= 600 and len(srv.table) <= 6
                stats["reads"] += 1
                await trio.sleep(0.001)  # ~1000 reads/s: full speed without starving the compute thread of the GIL

        done = trio.Event()
        with trio.fail_after(150):
            async with trio.open_nursery() as n:
                n.start_soon(status_reader, done)
                async with trio.open_nursery() as sessions:
                    for k in range(10):
                        sessions.start_soon(session, k)
                done.set()
        with trio.fail_after(10):  # every stream's handler has cleaned up
            while daemon.conns:
                await trio.sleep(0.05)

    assert off_loop == [], f"table mutated off the event loop: {sorted(set(off_loop))}"
    assert daemon.counters["internal"] == 0 and stats["results"] > 0 and stats["reads"] > 100
    assert len(srv.table) == 0 and srv.table.used_tokens == 0 and srv.sessions == {}
