"""`gtracd top` end to end: a live loopback network (an anchor, a seeker, three tiny-model workers, two of them on
the same range with the same default name) watched in a real terminal (tmux, 80x24); keys sort and quit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
import trio

pytest.importorskip("torch")

from gtracd.harness.launch import start_procs, stop_all  # noqa: E402

from .models import tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(120),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    """One private tmux server (its own socket), one 80x24 window."""

    def __init__(self, name: str):
        self.sock = name

    def __call__(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, *args], check=True, capture_output=True, text=True,
                              timeout=10).stdout

    def start(self, cmd: list[str]) -> None:
        self("-f", "/dev/null", "new-session", "-d", "-x", "80", "-y", "24", "-s", "top", " ".join(cmd))
        self("set-option", "-t", "top", "remain-on-exit", "on")

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "top")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True, timeout=10)


async def test_top_shows_every_daemon_sorts_and_quits_in_a_real_terminal(tmp_path):
    from gtracd.harness.controlnet import ControlNet

    folder = tiny_llama(tmp_path / "tiny", layers=4)
    cn = ControlNet(root=tmp_path / "net", network="t-top", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=5.0)
    cn.start(["a1"], seekers={"s1": 0.0})
    flags = ["--network", cn.network, "--bootstrap", ",".join(cn.anchor_addrs.values()), "--data-dir", str(cn.root),
             "--keystore", str(cn.keystore), "--heartbeat-s", "1", "--model", str(folder), "--ephemeral"]
    ws = start_procs([(["--role", "worker", "--layers", "0:2", "--name", "w-first"] + flags, "w-first"),
                      (["--role", "worker", "--layers", "2:4"] + flags, "twin-a"),  # default name: worker-2-4
                      (["--role", "worker", "--layers", "2:4"] + flags, "twin-b")], 120, cn.root)
    tmux = Tmux(f"gtracd-test-{os.getpid()}")
    try:
        twins = {w.peer_id[-8:] for w in ws[1:]}
        await until(lambda: len((cn.status("s1") or {}).get("workers", {})) == 3, 30, "the seeker to hear 3 workers")
        env = f"env TERM=xterm-256color COLUMNS=80 LINES=24 {sys.executable} -m gtracd.cli"
        rc_file = tmp_path / "top.rc"
        tmux.start([env, "top", "--data-dir", str(cn.root), "--interval", "0.3", ";", "echo", "$?", ">", str(rc_file)])

        def shows_everyone():
            s = tmux.screen()
            ok = all(n in s for n in ("a1", "s1", "w-first", "no holes")) and all(f"worker-2-4·{t}" in s
                                                                                   for t in twins)
            return s if ok else None

        screen = await until(shows_everyone, 30, "top to show every daemon")
        assert "sort layers" in screen and "coverage" in screen
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        tmux("send-keys", "-t", "top", "s")  # sort by the next column: name
        await until(lambda: "sort name" in tmux.screen(), 10, "the sort to change")
        tmux("send-keys", "-t", "top", "q")
        # the shell records top's exit status: tmux 3.3a sometimes leaves its pane's exited process unreaped
        # (a zombie, no pane_dead_status), so tmux's own record of it can never come
        rc = await until(lambda: rc_file.exists() and rc_file.read_text().strip(), 10, "top to quit on q")
        assert rc == "0"
    finally:
        tmux.kill()
        stop_all(ws)
        cn.stop_all()
    await trio.lowlevel.checkpoint()
