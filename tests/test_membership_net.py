"""Dynamic membership with real worker processes: a graceful drain lets a live session finish and costs the
worker no trust; a session cut by the drain bound is repaired without blame; self-placing workers joining at
once tile the model, and heal a hole after every replica of a span is killed."""

from __future__ import annotations

import random
import signal
import subprocess

import pytest
import trio

pytest.importorskip("torch")

from gtracd.control.peerview import PeerView  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.hop import HopError, HopSession  # noqa: E402
from gtracd.net.host import dial, running_host  # noqa: E402
from gtracd.routing import Params  # noqa: E402
from gtracd.seeker.generation import Generation, SeekerNet  # noqa: E402
from gtracd.seeker.main import discover  # noqa: E402

from .cluster import start_workers, stop_all  # noqa: E402
from .models import tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(120)]
PROMPT = [5, 17, 99, 3, 42, 7]


async def _exited(proc, within: float) -> int | None:
    try:  # a child process: its exit awaited on a thread, bounded
        return await trio.to_thread.run_sync(proc.wait, within)
    except subprocess.TimeoutExpired:
        return None


async def _reference(net, view):
    gen = Generation(net, view, Params(), rng=random.Random(0))
    r = await gen.turn(PROMPT, 12)
    await gen.aclose()
    return r


async def test_drain_lets_a_live_session_finish_refuses_new_ones_and_blames_nobody(tmp_path):
    folder = tiny_llama(tmp_path / "tiny", layers=6)
    ws = start_workers(str(folder), [(0, 3), (3, 6)], extra=["--drain-s", "60"])
    try:
        async with running_host(Identity.generate()) as host:
            view = PeerView()
            net = SeekerNet(host, view)
            assert await discover(net, view, [w.addr for w in ws]) == []
            ref = await _reference(net, view)
            gen = Generation(net, view, Params(), rng=random.Random(0), hop_timeout_floor_s=30)  # repairs counted: no stall may time out a hop
            r1 = await gen.turn(PROMPT, 4)  # a live session on both hops
            ws[1].proc.send_signal(signal.SIGTERM)
            # a new session is refused with `draining` (never blamed), the live one keeps going
            other = HopSession(host, await dial(host, ws[1].addr, 5), ws[1].peer_id)
            with pytest.raises(HopError) as e:
                for _ in range(50):  # the signal reaches the worker asynchronously
                    await other.open({"session": b"x" * 16, "model": ws[1].info["model"], "start": 3, "end": 6,
                                      "max_length": 64}, 5)
                    await other.close(b"x" * 16)
                    other = HopSession(host, await dial(host, ws[1].addr, 5), ws[1].peer_id)
                    await trio.sleep(0.1)
            assert e.value.code == "draining"
            r2 = await gen.turn(PROMPT + r1.tokens, 8)
            assert r1.tokens + r2.tokens == ref.tokens[:12] and gen.repairs == 0
            assert [b["outcome"] for b in gen.report_bodies("n", True, None, 12)] == ["success"]
            await gen.aclose()  # the last session ends: the worker leaves at once, not after 60 s
            assert await _exited(ws[1].proc, 10) == 0, "".join(ws[1].log[-30:])
    finally:
        stop_all(ws)


async def test_a_session_cut_by_the_drain_bound_is_repaired_without_blame(tmp_path):
    """The seeker hears the workers' heartbeats (as a daemon does): the worker announced `draining`, so the
    session its bound cut is repaired on the other replica and nobody is blamed."""
    from gtracd.config import load_settings
    from gtracd.control.follower import Follower, pinned_view
    from gtracd.daemon.node import running_node

    folder = tiny_llama(tmp_path / "tiny", layers=6)
    net_flags = ["--network", "t-drain", "--heartbeat-s", "0.5", "--data-dir", str(tmp_path)]
    ws = start_workers(str(folder), [(0, 3), (3, 6), (3, 6)], extra=["--drain-s", "1"] + net_flags)
    s = load_settings(flags={"network": "t-drain", "bootstrap": [w.addr for w in ws], "data_dir": str(tmp_path),
                             "model": str(folder), "node_timeout_s": 5.0})
    try:
        async with running_node("seeker", "s", Identity.generate(), s, None, False) as node:
            view = pinned_view(s)
            cache = Follower(node, view, set())
            await node.nursery.start(cache.run)
            with trio.fail_after(60):  # 30 s ran out once under three test workers (the heartbeats came later)
                while len(view.workers) < 3:  # heard every worker's heartbeat
                    changed = trio.Event()
                    view.listeners.append(changed.set)
                    await changed.wait()
                    view.listeners.remove(changed.set)
            net = SeekerNet(node.host, view)
            ref = await _reference(net, view)
            gen = Generation(net, view, Params(), rng=random.Random(0), hop_timeout_floor_s=30)  # repairs counted: no stall may time out a hop
            r1 = await gen.turn(PROMPT, 4)
            leaving = next(w for w in ws if w.peer_id == gen.chain[1])
            leaving.proc.send_signal(signal.SIGTERM)
            assert await _exited(leaving.proc, 15) == 0  # the bound cut our idle session, then it left
            assert view.workers[leaving.peer_id].state == "draining"
            r2 = await gen.turn(PROMPT + r1.tokens, 8)
            await gen.aclose()
            cache.close()
            assert r1.tokens + r2.tokens == ref.tokens[:12]
            assert gen.repairs == 1 and gen.repair_log[0]["failed"] == leaving.peer_id
            assert not gen.repair_log[0]["blamed"]
            bodies = gen.report_bodies("n", True, None, 12)
            assert [b["outcome"] for b in bodies] == ["success"] and leaving.peer_id not in bodies[0]["chain"]
            node.nursery.cancel_scope.cancel()
    finally:
        stop_all(ws)


async def test_auto_workers_joining_at_once_tile_the_model_and_heal_a_killed_span(tmp_path):
    from gtracd.harness.controlnet import ControlNet
    from gtracd.harness.launch import start_procs

    folder = tiny_llama(tmp_path / "tiny", layers=12)
    cn = ControlNet(root=tmp_path / "net", network="t-heal", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=3.0)
    cn.start(["a1"])
    flags = ["--network", cn.network, "--bootstrap", ",".join(cn.anchor_addrs.values()), "--data-dir", str(cn.root),
             "--keystore", str(cn.keystore), "--heartbeat-s", "1", "--node-timeout-s", "3", "--drain-s", "2",
             "--heal-after-s", "1"]
    names = [f"h{i}" for i in range(4)]
    ws = start_procs([(["--role", "worker", "--layers", "auto", "--max-layers", "6", "--model", str(folder),
                        "--ephemeral", "--name", n] + flags, n) for n in names], 120, cn.root)
    try:
        placed = {n: (w.info["start"], w.info["end"]) for n, w in zip(names, ws, strict=True)}
        assert sorted(placed.values()) == [(0, 6), (0, 6), (6, 12), (6, 12)], placed  # joint: no hole left
        for w in ws:
            assert any("placed at layers" in line for line in w.log), w.log  # one line: the decision, its reason
        for n, w in zip(names, ws, strict=True):
            if placed[n] == (6, 12):
                w.kill9()

        def healed():
            sts = {n: cn.status(n) for n in names if placed[n] == (0, 6)}
            movers = [n for n, st in sts.items() if st and st["placement"]["range"] == [6, 12]
                      and st["state"] == "serving"]
            return movers or None

        movers = await until(healed, 30, "a 0:6 worker to move to the killed span 6:12")
        await trio.sleep(3)  # and it stays that way: one mover, one move, the other keeps its range
        sts = {n: cn.status(n) for n in names if placed[n] == (0, 6)}
        assert len(movers) == 1 and sts[movers[0]]["placement"]["moves"] == 1
        stayed = next(n for n in sts if n != movers[0])
        assert sts[stayed]["placement"]["moves"] == 0 and sts[stayed]["placement"]["range"] == [0, 6]
    finally:
        stop_all(ws)
        cn.stop_all()
