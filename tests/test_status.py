"""`gtracd status` shows strings that came from the network as text, never as rich markup."""

from __future__ import annotations

from rich.console import Console

from gtracd.cli.status import render


def test_hostile_names_render_literally():
    hostile = "[/x][red]evil[/red] [link=file:///etc/passwd]x"
    doc = {"role": "seeker", "name": "s1", "peer_id": "12D3KooWabc", "network": "[bold]net", "uptime_s": 3.0,
           "stale": False, "links": {"connected": 1}, "gossip": {"sent": {"reports": 1}, "received": {}},
           "ledger": {"reports": 0, "reporters": 0}, "dropped": {"[/bad]": 2},
           "anchors": {"[/a]": {"reachable": False}},
           "workers": {"12D3KooW[/y]": {"name": hostile, "layers": [0, 9], "alive": True, "heard_s_ago": 1.0,
                                        "trust": 0.97, "latency_ms": 12.0, "load": 0.1}}}
    con = Console(record=True, width=250, color_system=None)
    con.print(render([doc]))  # a MarkupError here would be the bug
    out = con.export_text()
    assert hostile in out and "[bold]net" in out and "2 [/bad]" in out and "[/a]" in out
    assert "{" not in out  # no dict reprs: counters are shown in words


def test_gone_and_draining_workers_and_auto_placement_are_shown_as_such():
    doc = {"role": "seeker", "name": "s1", "peer_id": "12D3KooWabc", "network": "n", "uptime_s": 3.0,
           "stale": False, "links": {"connected": 1}, "gossip": {"sent": {}, "received": {}}, "dropped": {},
           "workers": {"A": {"name": "w-a", "layers": [0, 9], "alive": False, "state": "serving",
                             "heard_s_ago": 95.0, "trust": 0.97, "latency_ms": 12.0, "load": 0.1},
                       "B": {"name": "w-b", "layers": [9, 18], "alive": True, "state": "draining",
                             "heard_s_ago": 1.0, "trust": 0.97, "latency_ms": 12.0, "load": 0.1},
                       "C": {"name": "w-c", "layers": [18, 30], "alive": True, "state": "[/x]",
                             "heard_s_ago": 1.0, "trust": 0.97, "latency_ms": 12.0, "load": 0.1}}}
    con = Console(record=True, width=200, color_system=None)
    con.print(render([doc]))
    rows = {n: line for line in con.export_text().splitlines() for n in ("w-a", "w-b", "w-c") if n in line}
    assert "gone" in rows["w-a"] and "serving" not in rows["w-a"]
    assert "draining" in rows["w-b"] and "[/x]" in rows["w-c"]
    worker = {"role": "worker", "name": "w", "peer_id": "12D3KooWabc", "network": "n", "uptime_s": 3.0, "stale": False,
              "links": {}, "gossip": {"sent": {}, "received": {}}, "dropped": {}, "state": "serving",
              "layers": [10, 20], "sessions": 2,
              "placement": {"budget": "10 layers", "moves": 1, "target": None,
                            "decisions": ["12:00:00 moving 0:10 -> 10:20: healing: weakest span 10:20 had a hole"]}}
    con = Console(record=True, width=200, color_system=None)
    con.print(render([worker]))
    out = con.export_text()
    assert "serving, layers 10:20, 2 session(s)" in out and "1 move(s)" in out and "moving 0:10 -> 10:20" in out


def test_two_daemons_with_one_name_never_share_a_status_slot(tmp_path):
    from gtracd.cli.status import collect
    from gtracd.config import load_settings
    from gtracd.daemon.node import status_file, write_status

    s = load_settings(flags={"data_dir": str(tmp_path)})
    a = status_file(s, "worker", "worker-10-20", "12D3KooWaaaaaaaa")
    b = status_file(s, "worker", "worker-10-20", "12D3KooWbbbbbbbb")
    assert a != b
    a.parent.mkdir(parents=True)
    for path, pid in ((a, "12D3KooWaaaaaaaa"), (b, "12D3KooWbbbbbbbb")):
        write_status(path, {"role": "worker", "name": "worker-10-20", "peer_id": pid, "pid": 1,
                            "written_at": 0.0})
    assert {d["peer_id"] for d in collect(s, "worker-10-20")} == {"12D3KooWaaaaaaaa", "12D3KooWbbbbbbbb"}


def test_a_daemon_reports_its_memory_and_trims_its_heap():
    from gtracd.daemon.node import Heap

    h = Heap()
    st = h.status()
    assert st["rss_mib"] is not None and st["rss_mib"] > 0
    if "heap_in_use_mib" in st:  # glibc: the heap's own count, and free pages handed back
        assert st["heap_in_use_mib"] > 0 and st["heap_free_mib"] >= 0
        h.trim()
        assert h.status()["trims"] == 1


def test_status_says_whether_a_daemon_is_ready_and_why_not():
    doc = {"role": "seeker", "name": "s1", "peer_id": "12D3KooWabc", "network": "n", "uptime_s": 3.0,
           "readiness": {"ready": False, "why": "no worker serving the model heard yet (discovering)"},
           "keyring": {"serial": 2, "anchors": 3, "revoked": ["12D3KooWgone"]}}
    con = Console(record=True, width=200, color_system=None)
    con.print(render([doc]))
    out = con.export_text()
    assert "not ready: no worker serving the model heard yet (discovering)" in out
    assert "keyring serial 2: 3 anchors, 1 revoked" in out
