"""Lab II, item 2: no process a gtracd tool started outlives it — `lab up`, `lab sweep`, a benchmark and the
demo, each stopped by SIGTERM (it stops its children and says so) and killed by SIGKILL (it can say nothing;
the children notice their parent is gone and stop themselves: daemon/lifeline.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.waiting import wait_until

pytestmark = [pytest.mark.procs, pytest.mark.timeout(240)]

PLAN = ("peer_id,template,host_id,host_type,ip,port,layer_start,layer_end,cpu_load,fail_rate,trust0,net_delay_ms\n"
        "w0,P_guaranteed_safe,P1,P,100.64.0.1,6011,0,1,1,0,1,5\n"
        "w1,R_normal,R1,R,100.64.0.2,6011,0,1,1,0,0.9,5\n"
        "w2,P_guaranteed_safe,P1,P,100.64.0.1,6011,2,3,1,0,1,5\n"
        "w3,S_risky_fast,S1,S,100.64.0.3,6010,2,3,1,0.2,0.5,1\n")


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        out.setdefault(ppid, []).append(int(d.name))
    return out


def descendants(pid: int) -> set[int]:
    kids, out, todo = _children(), set(), [pid]
    while todo:
        for c in kids.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Tool:
    """A gtracd tool in a session of its own (so the signal reaches it alone), its stderr collected."""

    def __init__(self, args: list[str], cwd: Path, sigint_ignored: bool = False):
        # sigint_ignored: started as `tool &` from a script is (no job control): SIGTERM must still stop it
        self.p = subprocess.Popen([sys.executable, "-m", "gtracd.cli", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True, start_new_session=True,
                                  preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
                                  if sigint_ignored else None)
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.p.stderr), daemon=True).start()

    def text(self) -> str:
        return "".join(self.err)


def _stop_and_check(tool: Tool, sig: int, expect_children: int) -> str:
    wait_until(lambda: len(descendants(tool.p.pid)) >= expect_children or tool.p.poll() is not None, 120,
               "the tool's processes to start")
    assert tool.p.poll() is None, tool.text()[-3000:]
    kids = descendants(tool.p.pid)
    tool.p.send_signal(sig)
    try:
        tool.p.wait(60)
    finally:
        if tool.p.poll() is None:  # it did not stop: fail, and leave nothing running (its children follow it)
            tool.p.kill()
    wait_until(lambda: not any(alive(k) for k in kids), 60, "every child to end after its parent")
    for k in kids:  # reaped by init; nothing of ours left
        assert not alive(k)
    return tool.text()


@pytest.mark.model
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_lab_up_leaves_no_process_behind(tmp_path, sig):
    (tmp_path / "plan.csv").write_text(PLAN)
    tool = Tool(["lab", "up", "--plan", "plan.csv", "--time-scale", "0.05", "--dir", str(tmp_path / "lab")], tmp_path)
    wait_until(lambda: "gtracd lab: up" in tool.text() or tool.p.poll() is not None, 150, "the lab to come up")
    err = _stop_and_check(tool, sig, 4)  # 2 anchors, 2 host processes
    if sig != signal.SIGKILL:
        assert tool.p.returncode == 0 and "gtracd lab: stopped" in err, err[-2000:]


@pytest.mark.model
@pytest.mark.parametrize("sig", [signal.SIGTERM, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_lab_sweep_leaves_no_process_behind(tmp_path, sig):
    """(SIGKILL of a sweep is also what the --resume test does, in the default suite.)"""
    (tmp_path / "plan.csv").write_text(PLAN)
    tool = Tool(["lab", "sweep", "--plan", "plan.csv", "--modes", "g-trac", "--requests", "1000", "--tokens", "50",
                 "--time-scale", "0.05", "--out", "out", "--no-figures"], tmp_path)
    wait_until(lambda: "hears all" in tool.text() or tool.p.poll() is not None, 150, "the sweep to start")
    err = _stop_and_check(tool, sig, 4)
    if sig == signal.SIGTERM:
        assert tool.p.returncode == 128 + signal.SIGTERM, err[-2000:]
        assert "stopped its network" in err and err.strip().splitlines()[-1] == "gtracd: stopped by SIGTERM"


@pytest.mark.parametrize("sig,sigint_ignored", [(signal.SIGTERM, False), (signal.SIGTERM, True),
                                                (signal.SIGKILL, False)])
def test_a_benchmark_leaves_no_process_behind(tmp_path, sig, sigint_ignored):
    tool = Tool(["bench", "ledger", "--duration", "300"], tmp_path, sigint_ignored)
    err = _stop_and_check(tool, sig, 3)  # its anchors and seekers
    if sig == signal.SIGTERM:
        assert tool.p.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err, err[-2000:]


@pytest.mark.model
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_the_demo_leaves_no_process_behind(tmp_path, sig):
    tool = Tool(["demo"], tmp_path)
    err = _stop_and_check(tool, sig, 3)
    if sig == signal.SIGTERM:
        assert "stopped" in err, err[-2000:]


def test_a_child_stops_when_its_parent_is_killed(tmp_path):
    """The mechanism alone: a child told its parent's pid stops itself (SIGTERM to itself) once reparented."""
    script = ("import os, sys, subprocess\n"
              "from gtracd.daemon.lifeline import child_env\n"
              "c = subprocess.Popen([sys.executable, '-c', 'from gtracd.daemon.lifeline import watch_parent; "
              "import threading; watch_parent(); print(\"watching\", flush=True); threading.Event().wait(120)'], "
              "env=child_env())\n"
              "print(c.pid, flush=True)\n"
              "import threading; threading.Event().wait(120)\n")
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    child = int(p.stdout.readline())
    assert p.stdout.readline().strip() == "watching" and alive(child)
    p.kill()
    p.wait(10)
    wait_until(lambda: not alive(child), 10, "the child to stop itself")
