"""Children never outlive the process that started them (lab sweep, lab up, demo, benchmarks, tests).

A parent that starts gtracd processes puts its pid in their environment (`child_env`); each child, first thing,
starts a watcher thread (`watch_parent`) that notices when its parent is gone — whether it exited, was
interrupted, or was killed with SIGKILL and could run no cleanup — and then stops the child as SIGTERM would
(clean shutdown: the libp2p host closed first), with `os._exit` if that does not finish within a grace
period. The watcher compares `os.getppid()` with the pid it was told: a dead parent's children are reparented
(to init or a subreaper), so the check also holds for a parent that died before the watcher started.

Why not the alternatives: Linux's PR_SET_PDEATHSIG fires when the *thread* that forked the child ends, and our
benchmarks start processes from worker threads (trio.to_thread), which the thread cache retires; it exists only
on Linux and cannot be set for `multiprocessing` children. A process group the parent owns lets it signal
everyone on the way out, but a SIGKILLed parent has no way out. Polling the parent pid costs one wake-up per
`POLL_S` and works on Linux, macOS and Termux alike.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = "GTRACD_PARENT_PID"
POLL_S = 0.25
GRACE_S = 20.0  # a clean stop takes a few seconds; past this the child exits hard


def child_env(env: dict | None = None) -> dict:
    """`env` (default: this process's environment) for a child that must end when this process ends."""
    out = dict(os.environ if env is None else env)
    out[ENV] = str(os.getpid())
    return out


def watch_parent(grace_s: float = GRACE_S, poll_s: float = POLL_S) -> bool:
    """In a child started with `child_env`: stop this process (SIGTERM to itself, then a hard exit after
    `grace_s`) once its parent is gone. Returns whether a parent is being watched. The variable is removed,
    so this process's own children are told its pid, not its parent's."""
    text = os.environ.pop(ENV, None)
    if not text:
        return False
    try:
        parent = int(text)
    except ValueError:
        return False
    return watch(parent, grace_s, poll_s)


def watch(parent: int, grace_s: float = GRACE_S, poll_s: float = POLL_S) -> bool:
    """Stop this process once `parent` is no longer its parent (see watch_parent); `multiprocessing` children
    are given the pid as an argument."""
    if parent <= 1:
        return False

    def run() -> None:
        tick = threading.Event()  # never set: a wait that does not busy the process (this is a plain thread)
        while os.getppid() == parent:
            tick.wait(poll_s)
        try:
            print(f"gtracd: the process that started this one (pid {parent}) is gone; stopping", file=sys.stderr,
                  flush=True)
        except (OSError, ValueError):
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        tick.wait(grace_s)
        os._exit(1)

    threading.Thread(target=run, name="gtracd-lifeline", daemon=True).start()
    return True


_signal_seen: list[int] = []


def stop_on_sigterm() -> None:
    """In the main thread of a tool (lab sweep, lab up, demo, a benchmark): SIGTERM unwinds it like Ctrl-C, so
    every `finally` stops what it started. SIGTERM becomes SIGINT (so trio's own Ctrl-C handling unwinds a running
    trio.run at a safe point), remembered so the tool can say SIGTERM stopped it."""

    def handler(signum, frame):
        _signal_seen.append(signum)
        signal.raise_signal(signal.SIGINT)

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started in the background by a shell without job control (`tool &` in a script): SIGINT is ignored,
        # and Python and trio leave an ignored SIGINT alone, so the SIGTERM re-raised as SIGINT would be lost
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, handler)


def stopped_by() -> str:
    """"SIGTERM" if SIGTERM stopped this tool, else "SIGINT" (Ctrl-C)."""
    return signal.Signals(_signal_seen[-1]).name if _signal_seen else "SIGINT"
