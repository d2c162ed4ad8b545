"""Shutdown ordering and a quiet terminal: a daemon closes its ledger log only after every handler that writes to
it has stopped, and a normal run prints nothing but its own lines (no library log lines, no tracebacks), even
when it is stopped while ledger deltas keep arriving."""

from __future__ import annotations

import pytest
import trio

from gtracd.daemon.runtime import closed_after
from gtracd.harness.controlnet import ControlNet
from gtracd.ledger.store import MAGIC, ReportLog

from .waiting import until

pytestmark = pytest.mark.timeout(120)


async def test_closers_run_after_every_handler_even_one_still_writing_when_cancelled(tmp_path):
    """The shape every daemon uses (daemon/runtime.closed_after): a handler caught mid-write by the shutdown
    finishes its write before the log is closed."""
    order: list[str] = []
    log = ReportLog(tmp_path / "ledger.log")
    started = trio.Event()

    async def handler() -> None:
        try:
            started.set()
            await trio.sleep_forever()
        finally:  # a delta that arrived as shutdown began: persisted under a shield, as Replica.persist is
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)
                await trio.to_thread.run_sync(log.append, [b"x" * 40])
                order.append("handler wrote")

    async def body(closing: list) -> None:
        closing.append(lambda: (order.append("log closed"), log.close()))
        async with trio.open_nursery() as n:
            n.start_soon(handler)
            await started.wait()
            n.cancel_scope.cancel()  # SIGTERM

    await closed_after(body)
    assert order == ["handler wrote", "log closed"]
    assert (tmp_path / "ledger.log").stat().st_size == len(MAGIC) + 8 + 40  # the magic, one framed record


def _deltas(cn: ControlNet, name: str) -> int:
    return ((cn.status(name) or {}).get("counters") or {}).get("deltas", 0)


@pytest.mark.procs
async def test_a_seeker_stopped_while_deltas_arrive_exits_cleanly_and_quietly(tmp_path):
    cn = ControlNet(root=tmp_path / "net", network="t-quiet", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=5.0)
    cn.start(["a1", "a2"], fleet=6, seekers={"busy": 30.0, "quiet": 0.0})
    try:
        for _ in range(3):
            await until(lambda: _deltas(cn, "quiet") > 0, 30, "ledger deltas to reach the quiet seeker")
            p = cn.procs.pop("quiet")
            assert p.stop() == 0  # SIGTERM while the busy seeker's reports keep arriving as deltas
            lines = [ln for ln in p.log if ln.strip()]
            assert len(lines) == 1 and " ready: " in lines[0], "".join(p.log)  # its own line, nothing else
            log = ReportLog(cn.root / "seeker" / "quiet" / "ledger.log")
            held = sum(1 for _ in log.load())
            assert held > 0 and log.corrupt == 0 and log.torn_bytes == 0
            cn.start_seeker("quiet", 0.0)
    finally:
        cn.stop_all()
