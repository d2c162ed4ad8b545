"""`gtracd status [NAME] [--json]`: what each daemon running under a data directory sees.

Every daemon rewrites <data_dir>/run/<role>-<name>-<short peer id>.json once a second (atomically); this
command reads those files, so it needs no network access and works while the daemon is busy. A file whose
process is gone, or that stopped being refreshed, is shown as stale.
"""

from __future__ import annotations

import json
import os
import time

from .errors import UserError
from .node import status_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect(settings, name: str | None = None) -> list[dict]:
    d = status_dir(settings)
    out = []
    for f in sorted(d.glob("*.json")) if d.exists() else []:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if name and name not in (f.stem, doc.get("name"), f"{doc.get('role')}-{doc.get('name')}"):
            continue
        age = time.time() - doc.get("written_at", 0)
        doc["stale"] = not _alive(int(doc.get("pid", -1))) or age > 10
        doc["age_s"] = round(age, 1)
        out.append(doc)
    return out


def main(args, settings) -> int:
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
    import trio

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
    from .tui.network import build
    from .tui.render import report

    return report(build(docs))
