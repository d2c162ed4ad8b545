"""Rich renderables for `gtracd top` (full screen) and `gtracd status` (one shot) from a tui.network.Network.

Every string that came from the network (names, states, models, errors, drop reasons) goes into a rich Text
as plain text, never through markup, so a worker named `[/x]` or `[link=...]` is shown literally.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.layout import Layout
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..wire.text import shown
from .network import Network, Peer, as_dict, as_list, number, short
from .view import KEYS, Trends, ViewState, visible

STATE_STYLE = {"serving": "green", "up": "green", "draining": "yellow", "loading": "cyan", "joining": "cyan",
               "gone": "red", "down": "red", "stale": "red"}


def _t(*parts) -> Text:
    """A Text from (string, style) pairs or plain strings; strings are never parsed as markup."""
    out = Text(no_wrap=True, overflow="ellipsis")
    for p in parts:
        if isinstance(p, tuple):
            out.append(shown(p[0]), style=p[1])
        else:
            out.append(shown(p))
    return out


def _rep_style(n: int) -> str:
    return "bold white on red" if n == 0 else ("black on yellow" if n == 1 else "black on green")


MAX_MODELS = 2  # coverage blocks shown; the rest are summed up in one line (anyone can announce a model)


def coverage_map(net: Network, width: int = 80, models: int = MAX_MODELS) -> Group:
    """Per model (the pinned or served ones first, then the most served): one cell per layer (or per bucket of
    layers when the model is wider than the screen) showing how many alive, serving replicas at or above the
    trust floor host it; holes in red."""
    parts: list = []
    if not net.coverage:
        return Group(Text("coverage: no worker heard yet", style="dim"))
    for cov in net.coverage[:models]:
        holes = cov.holes
        head = _t(("coverage ", "bold"), (cov.model[:12], "bold"), " · ")  # what matters first: narrow screens cut
        head.append("holes " + ", ".join(f"{a}:{b}" for a, b in holes) if holes else "no holes",
                    style="bold red" if holes else "green")
        head.append(f" · min {cov.min_replicas} replica(s) · {cov.layers} layers · τ_min {cov.trust_floor:g}")
        parts.append(head)
        cells = max(1, width - 2)
        per = max(1, -(-cov.layers // cells))  # layers per cell
        row, axis = Text(" "), Text(" ", style="dim")
        for i in range(0, cov.layers, per):
            n = min(cov.replicas[i:i + per])
            row.append("·" if n == 0 else (str(n) if n < 10 else "+"), style=_rep_style(n))
            axis.append(str(i)[:1] if i % (10 * per) == 0 else " ")
        # the axis shows a tick digit every 10 cells; spell the tick's full number where it fits
        ticks = Text(" ", style="dim")
        pos = 0
        for c, i in enumerate(range(0, cov.layers, per)):
            if i % (10 * per) == 0 and c >= pos:
                label = str(i)
                ticks.append(" " * (c - pos) + label)
                pos = c + len(label)
        parts += [row, ticks]
    rest = net.coverage[models:]
    if rest:
        parts.append(_t((f"+ {len(rest)} other model(s) announced by {sum(c.workers for c in rest)} worker(s)",
                         "dim")))
    return Group(*parts)


def _trust(p: Peer, trends: Trends | None, narrow: bool = False) -> Text:
    if p.trust is None:
        return Text("-")
    out = Text(f"{p.trust:.3f}")
    if trends is not None:
        out.append(trends.arrow(p.peer_id))
        spark = trends.spark(p.peer_id)
        if spark and not narrow:
            out.append(" " + spark[-6:], style="cyan")
    return out


NARROW = 70  # below this many columns the peers table drops the sparkline and the model column


def peers_table(net: Network, st: ViewState, trends: Trends | None = None, limit: int | None = None,
                width: int = 120) -> Table:
    rows = visible(net.peers.values(), st)
    arrow = "↓" if st.reverse else "↑"
    title = _t(("peers ", "bold"), f"{len(rows)}/{len(net.peers)} · sort {st.sort} {arrow}")
    if st.filter or st.typing:
        title.append(" · filter ")
        title.append(st.filter + ("▏" if st.typing else ""), style="reverse" if st.typing else "bold")
    t = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False, expand=True)
    narrow = width < NARROW
    cols = [("name", {"ratio": 3, "no_wrap": True, "overflow": "ellipsis", "min_width": 12}), ("role", {}),
            ("layers", {}), ("trust", {"no_wrap": True}), ("lat ms", {"justify": "right"}), ("state", {})]
    if not narrow:
        cols.append(("model", {"no_wrap": True, "overflow": "ellipsis", "max_width": 8}))
    for c, kw in cols:
        t.add_column(c, **kw)
    page = rows if limit is None else rows[:max(0, limit)]
    for p in page:
        cells = [_t((p.label, "bold" if p.local else "")), _t(p.role),
                 Text(f"{p.layers[0]}:{p.layers[1]}" if p.layers else "-"), _trust(p, trends, narrow),
                 Text("-" if p.latency_ms is None else f"{p.latency_ms:.1f}"),
                 _t((p.state, STATE_STYLE.get(p.state, "")))]
        t.add_row(*cells, *([] if narrow else [_t(p.model[:8])]))
    if len(page) < len(rows):
        t.add_row(Text(f"… {len(rows) - len(page)} more (filter with /)", style="dim"))
    return t


def _clock(at) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at)) if isinstance(at, (int, float)) else "--:--:--"


def requests_panel(net: Network, limit: int = 5) -> Group:
    lines: list = [_t(("recent requests", "bold"), (" ✓ ok ✗ failed ↻ repaired", "dim"))]
    if not net.requests:
        lines.append(Text("none yet", style="dim"))
    for r in net.requests[:limit]:
        line = _t(_clock(r.get("at")) + " ")
        if r.get("ok"):
            line.append("✓ ", style="green")
            line.append(f"{r.get('tokens', 0)} tok")
            if isinstance(r.get("tok_s"), (int, float)):
                line.append(f" {r['tok_s']:.1f} tok/s")
        else:
            line.append("✗ ", style="bold red")
            if r.get("culprit"):
                line.append(f"culprit {shown(short(str(r['culprit'])))} ", style="red")
            line.append(shown(r.get("error") or ""))
        for x in [x for x in as_list(r.get("repairs")) if isinstance(x, dict)]:
            line.append(" ↻ " + shown(short(str(x.get("failed")))) + ("" if x.get("blamed", True) else " excused"),
                        style="yellow")
        lines.append(line)
    return Group(*lines)


def chains_panel(net: Network, limit: int = 3) -> Group:
    lines: list = [Text("chains in use (per-hop latency)", style="bold")]
    if not net.chains:
        lines.append(Text("none yet", style="dim"))
    for chain in net.chains[:limit]:
        line = Text(no_wrap=True, overflow="ellipsis")
        for k, h in enumerate(chain):
            if k:
                line.append(" → ", style="dim")
            p = net.peers.get(str(h.get("peer")))
            line.append(shown(p.label if p else (str(h.get("name") or "") or short(str(h.get("peer"))))))
            lay = h.get("layers")
            if isinstance(lay, list) and len(lay) == 2:
                line.append(f"[{lay[0]}:{lay[1]}]", style="dim")
            if isinstance(h.get("latency_ms"), (int, float)):
                line.append(f" {h['latency_ms']:.0f}ms", style="cyan")
        lines.append(line)
    return Group(*lines)


def anchors_panel(net: Network) -> Group:
    lines: list = [Text("anchors & ledger", style="bold")]
    if not net.anchors:
        lines.append(Text("no anchors known", style="dim"))
    for pid, a in sorted(net.anchors.items()):
        p = net.peers.get(pid)
        line = _t(p.label if p else short(pid), " ")
        line.append("up" if a.up else "down", style="green" if a.up else "bold red")
        if a.last_failed:  # the latest round is what matters; the running total is in status --json
            line.append(f" · last sync failed {a.failed_s_ago:.0f}s ago", style="yellow")
        elif a.in_sync is not None:
            line.append(" · in sync" if a.in_sync else " · catching up", style="green" if a.in_sync else "yellow")
            line.append(f" {a.synced_s_ago:.0f}s ago")
        lines.append(line)
    if net.ledgers:  # one line: reports each local replica holds (equal counts: converged)
        line = _t(("ledger ", "dim"))
        for k, led in enumerate(net.ledgers):
            line.append((" · " if k else "") + shown(f"{led['who'].split(' ', 1)[-1]} {led['reports']}"))
            if led.get("pending"):
                line.append(f" (+{led['pending']} pending)", style="yellow")
        lines.append(line)
    return Group(*lines)


def drops_panel(net: Network, limit: int = 6) -> Group:
    lines: list = [Text("drops by reason", style="bold")]
    items = sorted(net.drops.items(), key=lambda kv: (-kv[1], kv[0]))
    if not items:
        lines.append(Text("none", style="green"))
    for k, v in items[:limit]:
        lines.append(_t(f"{v:>4} ", (k, "yellow")))
    if len(items) > limit:
        lines.append(Text(f"… {len(items) - limit} more reasons (gtracd status)", style="dim"))
    return Group(*lines)


def help_panel() -> Panel:
    t = Table(box=None, show_header=False)
    for k, what in KEYS:
        t.add_row(Text(k, style="bold"), Text(what))
    return Panel(t, title="keys", border_style="cyan")


def header(net: Network, where: str, st: ViewState) -> Text:
    roles: dict[str, int] = {}
    for d in net.daemons:
        roles[str(d.get("role"))] = roles.get(str(d.get("role")), 0) + 1
    out = _t(("gtracd top", "bold"), " · ", time.strftime("%H:%M:%S"), ("  ? keys  q quit", "dim"), " · ",
             ", ".join(f"{n} {r}{'' if n == 1 else 's'}" for r, n in sorted(roles.items())) or "no daemon", " under ", where)
    return out


def screen(net: Network, st: ViewState, trends: Trends | None, where: str, width: int, height: int) -> Layout:
    """The whole `gtracd top` screen for a terminal of width x height (80x24 at least is readable)."""
    cov_h = 3 * min(len(net.coverage), MAX_MODELS) + (len(net.coverage) > MAX_MODELS) if net.coverage else 1
    bottom_h = min(9, max(4, height // 3))
    peers_h = max(3, height - 1 - cov_h - bottom_h)
    root = Layout()
    root.split_column(Layout(header(net, where, st), size=1, name="header"),
                      Layout(coverage_map(net, width), size=cov_h, name="coverage"),
                      Layout(name="peers", size=peers_h), Layout(name="bottom", size=bottom_h))
    if st.help:
        root["peers"].update(help_panel())
    else:
        root["peers"].update(peers_table(net, st, trends, limit=peers_h - 3, width=width))
    left = Group(requests_panel(net, limit=max(1, bottom_h // 2 - 1)), chains_panel(net, limit=2))
    right = Group(anchors_panel(net), drops_panel(net, limit=max(1, bottom_h - 3 - len(net.anchors))))
    root["bottom"].split_row(Layout(Padding(left, (0, 2, 0, 0)), name="left", ratio=3),
                             Layout(right, name="right", ratio=2))
    return root


def daemon_line(d: dict) -> Group:
    """One local daemon, in words (for `gtracd status`): who, how long up, links, ledger, worker state."""
    lines = []
    head = _t((f"{d.get('role')} {d.get('name')}", "bold"), f" {short(str(d.get('peer_id', '')))}  network ",
              str(d.get("network")), f"  up {number(d.get('uptime_s')) or 0.0:.0f}s")
    if d.get("stale"):
        head.append("  STALE", style="bold red")
    lines.append(head)
    links, g = as_dict(d.get("links")), as_dict(d.get("gossip"))
    sent = sum(v for v in as_dict(g.get("sent")).values() if isinstance(v, int))
    recv = sum(v for v in as_dict(g.get("received")).values() if isinstance(v, int))
    lines.append(_t(f"  links {links.get('connected', 0)} connected, {_len(links.get('unreachable'))} unreachable, "
                    f"{_len(links.get('cut'))} cut · gossip {sent} sent, {recv} received"))
    rd = as_dict(d.get("readiness"))
    if "ready" in rd:  # what /health says (a seeker: is there a chain; the reason in the daemon's own words)
        lines.append(_t("  ", ("ready", "green") if rd["ready"] else ("not ready", "bold yellow"), ": ",
                        str(rd.get("why", ""))))
    kr = as_dict(d.get("keyring"))
    if kr.get("serial") or kr.get("revoked"):
        lines.append(_t(f"  keyring serial {kr.get('serial')}: {kr.get('anchors')} anchors, "
                        f"{_len(kr.get('revoked'))} revoked"))
    if d.get("outbox"):
        lines.append(_t(("  outbox: ", "yellow"), f"{d['outbox']} report(s) waiting for an anchor"))
    if d.get("role") == "worker" and d.get("state"):
        lay = d.get("layers")
        lines.append(_t("  worker: ", (str(d["state"]), STATE_STYLE.get(str(d["state"]), "")),
                        ", layers " + (f"{lay[0]}:{lay[1]}" if isinstance(lay, list) and len(lay) == 2 else "none yet")
                        + f", {d.get('sessions', 0)} session(s)"))
    pl = d.get("placement")
    if isinstance(pl, dict):
        tgt = pl.get("target")
        lines.append(_t(f"  auto placement: budget {pl.get('budget')}, {pl.get('moves', 0)} move(s)"
                        + (f", moving to {tgt[0]}:{tgt[1]}" if isinstance(tgt, list) and len(tgt) == 2 else "")))
        for line in (pl.get("decisions") if isinstance(pl.get("decisions"), list) else [])[-3:]:
            lines.append(_t("    ", str(line)))
    return Group(*lines)


def _len(x) -> int:
    return len(x) if isinstance(x, (list, dict)) else 0


def report(net: Network, st: ViewState | None = None) -> Group:
    """`gtracd status`: every local daemon in words, then the network tables `gtracd top` shows."""
    st = st or ViewState()
    parts: list = [daemon_line(d) for d in net.daemons]
    parts += [Text(""), coverage_map(net), peers_table(net, st), Text(""), requests_panel(net, limit=10),
              chains_panel(net), anchors_panel(net), drops_panel(net, limit=50)]
    return Group(*parts)
