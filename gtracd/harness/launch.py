"""Start worker processes on loopback (demo, benchmarks, tests): one torch thread each, clean stop."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..daemon.lifeline import child_env
from ..daemon.statusfiles import collect


@dataclass
class WorkerProc:
    proc: subprocess.Popen
    info: dict
    log: list[str] = field(default_factory=list)

    @property
    def addr(self) -> str:
        return self.info["addrs"][0]

    @property
    def peer_id(self) -> str:
        return self.info["peer_id"]

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return -9
        return self.proc.returncode


def worker_env() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env.setdefault("GTRACD_MODEL_CACHE", str(Path.home() / ".gtracd" / "models"))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def start_procs(cmds: list[tuple[list[str], str]], timeout: float = 300.0, tmp: Path | None = None,
                env: dict | None = None, wrap=None) -> list[WorkerProc]:
    """Start `gtracd` processes concurrently (each `(args, name)`, given --ready-file here); return once every
    one said it is ready, in order. `wrap(name, argv)`: the command line that runs argv (e.g. inside a network
    namespace: harness/netns.py)."""
    tmp = tmp or Path(tempfile.mkdtemp(prefix="gtracd-test-"))
    procs = []
    for args, name in cmds:
        ready = tmp / f"{name}.ready.json"
        ready.unlink(missing_ok=True)
        rf = ["--ready-file", str(ready)]  # a role option: before any role subcommand
        cmd = [sys.executable, "-m", "gtracd.cli"] + (args[:2] + rf + args[2:] if args[0] == "--role" else args + rf)
        cmd = wrap(name, cmd) if wrap else cmd
        # own session: a Ctrl-C or SIGTERM aimed at the caller's process group reaches only the caller, which
        # stops its children once each (a second SIGTERM mid-shutdown would kill them uncleanly)
        # child_env: the child stops itself once this process is gone, however it ended (daemon/lifeline.py)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             env=child_env(env or worker_env()), start_new_session=True)
        procs.append((p, ready))
    out: list[WorkerProc] = []
    try:
        for p, ready in procs:
            log: list[str] = []
            ev = threading.Event()

            def drain(p=p, log=log, ev=ev):
                for line in p.stderr:
                    log.append(line)
                    if " ready: " in line:
                        ev.set()
                ev.set()  # exited

            threading.Thread(target=drain, daemon=True).start()
            if not ev.wait(timeout) or p.poll() is not None or not ready.exists():
                try:  # it exited (its stderr ended before poll() saw it): its own last words explain why
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
                raise RuntimeError(f"process did not start: {''.join(log[-20:])}")
            out.append(WorkerProc(p, json.loads(ready.read_text()), log))
    except BaseException:
        for p, _ in procs:
            p.kill()
        raise
    return out


def start_workers(model: str, ranges: list[tuple[int, int]], extra: list[str] | None = None,
                  timeout: float = 300.0, names: list[str] | None = None) -> list[WorkerProc]:
    """Start one worker per range, concurrently; return once every one said it is ready."""
    cmds = []
    for i, (a, b) in enumerate(ranges):
        name = names[i] if names else f"w{i}-{a}-{b}"
        cmds.append((["--role", "worker", "--layers", f"{a}:{b}", "--model", model, "--ephemeral", "--name", name]
                     + (extra or []), name))
    return start_procs(cmds, timeout)


def status_of(data_dir: Path) -> dict:
    """The status of the daemon that keeps its state under `data_dir` ({} until it has written one)."""
    docs = [d for d in collect(Settings(data_dir=str(data_dir))) if "role" in d]
    return docs[0] if docs else {}


def stop_all(workers: list[WorkerProc]) -> list[int]:
    return [w.stop() for w in workers]
