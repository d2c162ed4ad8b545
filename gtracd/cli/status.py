"""`gtracd status [NAME] [--json]`: what each daemon running under a data directory sees.

Every daemon rewrites <data_dir>/run/<role>-<name>-<short peer id>.json once a second (atomically); this
command reads those files, so it needs no network access and works while the daemon is busy. A file whose
process is gone, or that stopped being refreshed, is shown as stale.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import trio

from ..daemon.statusfiles import collect, status_dir
from ..errors import UserError
from ..tui.network import build
from ..tui.render import report

if TYPE_CHECKING:
    from gtracd.config import Settings


def main(args: argparse.Namespace, settings: Settings) -> int:
    docs = collect(settings, args.name)
    if args.json:
        print(json.dumps(docs, indent=1, sort_keys=True, default=str))
        return 0 if docs else 1
    if not docs and not args.watch:
        where = status_dir(settings)
        raise UserError(f"no running daemon found under {where}" + (f" named {args.name!r}" if args.name else "")
                        + " (daemons started with another --data-dir write their status there)")
    from rich.console import Console
    from rich.live import Live

    con = Console()
    if not args.watch:
        con.print(render(docs))
        return 0

    def view():
        docs = collect(settings, args.name)
        return render(docs) if docs else f"no running daemon under {status_dir(settings)}"

    async def watch(live) -> None:
        while True:
            await trio.sleep(args.watch)
            live.update(view())

    with Live(view(), console=con, refresh_per_second=2, screen=False) as live:
        try:
            trio.run(watch, live)
        except KeyboardInterrupt:
            pass
    return 0


def render(docs: list[dict]):
    """The human status: every local daemon in words, then the network tables `gtracd top` shows (names and
    states from the network are shown as text, never markup)."""

    return report(build(docs))
