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
        if name and name not in (f.stem, doc.get("name")):
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
    from rich.console import Console, Group
    from rich.live import Live

    con = Console()
    if not args.watch:
        for d in docs:
            con.print(render(d))
        return 0
    import trio

    async def watch(live) -> None:
        while True:
            await trio.sleep(args.watch)
            docs = collect(settings, args.name)
            live.update(Group(*map(render, docs)) if docs else f"no running daemon under {status_dir(settings)}")

    with Live(Group(*map(render, docs)), console=con, refresh_per_second=2, screen=False) as live:
        try:
            trio.run(watch, live)
        except KeyboardInterrupt:
            pass
    return 0


def _short(pid: str) -> str:
    return pid[-10:] if pid else "?"


def _state(w: dict) -> str:
    """A worker's liveness as a seeker sees it: gone (not heard within node_timeout_s) is never shown live."""
    from rich.markup import escape

    if not w["alive"]:
        return "[red]gone[/]"
    state = str(w.get("state", "serving"))
    return {"serving": "[green]serving[/]", "draining": "[yellow]draining[/]"}.get(state, escape(state))


def render(d: dict):
    """One daemon's view as a rich renderable. Names and ids can come from the network (heartbeats): they are
    escaped or shown as plain Text, never interpreted as markup."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    lines = []
    led = d.get("ledger", {})
    lines.append(f"[bold]{escape(str(d['role']))} {escape(str(d['name']))}[/] {escape(_short(d['peer_id']))}  "
                 f"network {escape(str(d['network']))}  "
                 f"up {d['uptime_s']:.0f}s" + ("  [red]STALE[/]" if d["stale"] else ""))
    links = d.get("links", {})
    lines.append(f"  links: {links.get('connected', 0)} connected, unreachable {len(links.get('unreachable', []))}, "
                 f"cut {len(links.get('cut', []))}; gossip sent {escape(str(d['gossip']['sent']))} received "
                 f"{escape(str(d['gossip']['received']))}")
    if led:
        lines.append(f"  ledger: {led.get('reports', 0)} reports from {led.get('reporters', 0)} reporters"
                     + (f", {led['pending']} pending" if led.get("pending") else "")
                     + (f", last pull {led['last_pull_age_s']}s ago" if led.get("last_pull_age_s") is not None
                        else ""))
    anchors = d.get("anchors")
    if isinstance(anchors, dict) and anchors:
        lines.append("  anchors: " + ", ".join(f"{escape(_short(a))} {'up' if v['reachable'] else '[red]down[/]'}"
                                               for a, v in anchors.items()))
    elif isinstance(anchors, list) and anchors:
        lines.append("  peer anchors: " + ", ".join(escape(_short(a)) for a in anchors))
    drops = {**d.get("dropped", {}), **{f"admission.{k}": v for k, v in d.get("admission_dropped", {}).items()}}
    lines.append("  dropped: " + (escape(", ".join(f"{k} {v}" for k, v in sorted(drops.items()))) if drops else "none"))
    if d.get("outbox"):
        lines.append(f"  outbox: {d['outbox']} report(s) waiting for an anchor")
    if d.get("role") == "worker" and d.get("state"):
        lay = d.get("layers")
        lines.append(f"  worker: {escape(str(d['state']))}, layers " + (f"{lay[0]}:{lay[1]}" if lay else "none yet")
                     + f", {d.get('sessions', 0)} session(s)")
    pl = d.get("placement")
    if pl:
        lines.append(f"  auto placement: budget {escape(str(pl.get('budget')))}, {pl.get('moves', 0)} move(s)"
                     + (f", moving to {pl['target'][0]}:{pl['target'][1]}" if pl.get("target") else ""))
        for line in pl.get("decisions", [])[-3:]:
            lines.append(f"    {escape(str(line))}")
    parts: list = ["\n".join(lines)]
    workers = d.get("workers") or {}
    if workers:
        t = Table(show_header=True, header_style="bold")
        for c in ("worker", "name", "layers", "state", "heard", "trust", "latency ms", "load"):
            t.add_column(c)
        for pid, w in sorted(workers.items(), key=lambda kv: (kv[1]["layers"], kv[0])):
            t.add_row(Text(_short(pid)), Text(str(w["name"])), f"{w['layers'][0]}:{w['layers'][1]}",
                      _state(w),
                      "-" if w["heard_s_ago"] is None else f"{w['heard_s_ago']}s ago", f"{w['trust']:.3f}",
                      f"{w['latency_ms']:.1f}", "-" if w["load"] is None else f"{w['load']:.2f}")
        parts.append(t)
    elif d.get("trust"):
        t = Table(show_header=True, header_style="bold")
        for c in ("worker", "trust", "latency ms"):
            t.add_column(c)
        lat = d.get("latency_ms", {})
        for pid, tr in sorted(d["trust"].items()):
            t.add_row(Text(_short(pid)), f"{tr:.3f}", f"{lat.get(pid, float('nan')):.1f}")
        parts.append(t)
    return Group(*parts)
