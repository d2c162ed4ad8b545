"""`gtracd status` shows strings that came from the network as text, never as rich markup."""

from __future__ import annotations

from rich.console import Console

from gtracd.status import render


def test_hostile_names_render_literally():
    hostile = "[/x][red]evil[/red] [link=file:///etc/passwd]x"
    doc = {"role": "seeker", "name": "s1", "peer_id": "12D3KooWabc", "network": "[bold]net", "uptime_s": 3.0,
           "stale": False, "links": {"connected": 1}, "gossip": {"sent": {"reports": 1}, "received": {}},
           "ledger": {"reports": 0, "reporters": 0}, "dropped": {"[/bad]": 2},
           "anchors": {"[/a]": {"reachable": False}},
           "workers": {"12D3KooW[/y]": {"name": hostile, "layers": [0, 9], "alive": True, "heard_s_ago": 1.0,
                                        "trust": 0.97, "latency_ms": 12.0, "load": 0.1}}}
    con = Console(record=True, width=250, color_system=None)
    con.print(render(doc))  # a MarkupError here would be the bug
    out = con.export_text()
    assert hostile in out and "[bold]net" in out and "[/bad] 2" in out and "[/a]" in out
