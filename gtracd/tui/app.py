"""`gtracd top [NAME]`: the full-screen live view.

A thin driver: every `--interval` seconds (and at once after a key press) it reads the local daemons' status
files (gtracd.daemon.statusfiles.collect; no network access, so it works while daemons are busy and needs no key),
builds a tui.network.Network, and redraws tui.render.screen in the terminal's alternate screen (rich Live:
frames replace each other in place, no flicker). Keys are read in cbreak mode from the terminal; the
terminal's modes are restored however the view ends.
"""

from __future__ import annotations

import argparse
import os
import sys
import termios
import tty
from typing import TYPE_CHECKING

import trio

from ..daemon.statusfiles import collect, status_dir
from ..errors import UserError
from .network import build
from .render import screen
from .view import QUIT, Trends, ViewState, keys_of, on_key

if TYPE_CHECKING:
    from gtracd.config import Settings


class Keys:
    """Key presses from the terminal on stdin (cbreak: one character at a time, Ctrl-C still a signal)."""

    def __init__(self, fd: int = 0):
        self.fd = fd
        self._saved = None

    def __enter__(self) -> Keys:
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc) -> None:
        if self._saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)

    async def read(self) -> str:
        await trio.lowlevel.wait_readable(self.fd)  # the fd stays blocking: stdout shares the terminal
        data = os.read(self.fd, 64)
        if not data:
            raise EOFError
        return data.decode("utf-8", "replace")


async def run(settings: Settings, name: str | None, interval: float) -> int:
    from rich.console import Console
    from rich.live import Live

    console = Console()
    where = str(status_dir(settings))
    st, trends = ViewState(), Trends()
    wake = trio.Event()

    def frame():
        docs = collect(settings, name)
        net = build(docs)
        trends.add(net.peers.values())
        w, h = console.size
        return screen(net, st, trends, where, w, h)

    with Keys() as keys, Live(frame(), console=console, screen=True, auto_refresh=False,
                              redirect_stdout=False, redirect_stderr=False) as live:

        async def read_keys(cancel) -> None:
            nonlocal st, wake
            try:
                while True:
                    for key in keys_of(await keys.read()):
                        nxt = on_key(st, key)
                        if nxt == QUIT:
                            cancel.cancel()
                            return
                        st = nxt
                    wake.set()
            except EOFError:
                cancel.cancel()

        async with trio.open_nursery() as n:
            n.start_soon(read_keys, n.cancel_scope)
            while True:
                with trio.move_on_after(interval):
                    await wake.wait()
                wake = trio.Event()
                live.update(frame(), refresh=True)
    return 0


def main(args: argparse.Namespace, settings: Settings) -> int:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("gtracd top needs a terminal; for a one-shot view use `gtracd status` "
                        "(or `gtracd status --json` for machines)")
    if args.interval <= 0:
        raise UserError("--interval must be > 0 seconds")
    try:
        return trio.run(run, settings, args.name, args.interval)
    except KeyboardInterrupt:
        return 0
