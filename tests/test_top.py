"""`gtracd top`: the network model built from status documents, key handling, and the screen rendered headlessly
on a recorded rich Console (a known network: a coverage hole, a gone worker, a draining one, a worker below the
trust floor, two workers sharing a name, a hostile name)."""

from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from gtracd.tui.network import build
from gtracd.tui.render import report, screen
from gtracd.tui.view import QUIT, SORTS, Trends, ViewState, keys_of, on_key, visible

FP = "d15430767150c38c2889cff573c4a68d"
HOSTILE = "[/x][red]evil[/red]"


def W(name, a, b, **kw):
    return {"name": name, "layers": [a, b], "model": FP, "total_layers": 30, "alive": True, "state": "serving",
            "heard_s_ago": 1.0, "trust": 0.99, "latency_ms": 12.0, "load": 0.1, "free_tokens": 1000, **kw}


def docs(now=None):
    now = time.time() if now is None else now
    seeker = {"role": "seeker", "name": "s1", "peer_id": "12D3KooWseeker0001", "network": "main", "uptime_s": 40,
              "written_at": now, "age_s": 0.3, "stale": False, "links": {"connected": 4},
              "gossip": {"sent": {"reports": 2}, "received": {"heartbeats": 40}}, "dropped": {"bad_signature": 3},
              "library_logs": {"transport.tcp:error": 7}, "ledger": {"reports": 120, "reporters": 3},
              "trust_floor": 0.96,
              "anchors": {"12D3KooWanchor0001": {"reachable": True}, "12D3KooWanchor0002": {"reachable": False}},
              "workers": {"12D3KooWw1aaaaaaaa": W("w1", 0, 10), "12D3KooWw2bbbbbbbb": W(HOSTILE, 10, 20, trust=0.91),
                          "12D3KooWw3cccccccc": W("w3", 10, 20, alive=False, heard_s_ago=95.0),
                          "12D3KooWw4dddddddd": W("w4", 20, 30, state="draining"),
                          "12D3KooWw5eeeeeeee": W("twin", 20, 30), "12D3KooWw6ffffffff": W("twin", 0, 10)},
              "requests": [{"at": now - 5, "ok": True, "tokens": 24, "tok_s": 13.1, "culprit": None, "error": None,
                            "chain": [{"peer": "12D3KooWw1aaaaaaaa", "name": "w1", "layers": [0, 10],
                                       "latency_ms": 12.3},
                                      {"peer": "12D3KooWw5eeeeeeee", "name": "twin", "layers": [20, 30],
                                       "latency_ms": 8.0}],
                            "repairs": [{"hop": 1, "failed": "12D3KooWw3cccccccc", "blamed": True}]},
                           {"at": now - 50, "ok": False, "tokens": 0, "chain": [], "repairs": [],
                            "culprit": "12D3KooWw3cccccccc", "error": "hop 1 timed out"}]}
    anchor = {"role": "anchor", "name": "anchor1", "peer_id": "12D3KooWanchor0001", "network": "main",
              "uptime_s": 400, "written_at": now, "age_s": 0.5, "stale": False, "links": {"connected": 3},
              "gossip": {"sent": {}, "received": {}}, "dropped": {}, "admission_dropped": {"rate": 2},
              "ledger": {"reports": 121, "reporters": 3, "pending": 1},
              "anchors": {"12D3KooWanchor0002": {"reachable": False, "failures": 3, "ok_at": now - 60,
                                                 "in_sync": True, "failed_at": now - 5}}, "workers": {}}
    return [seeker, anchor]


def text(renderable, width=80, height=24) -> str:
    con = Console(record=True, width=width, height=height, color_system=None, file=open("/dev/null", "w"))
    con.print(renderable)
    return con.export_text()


def rows_by_name(out: str, *names) -> dict[str, str]:
    return {n: line for line in out.splitlines() for n in names if line.startswith(n)}


def test_network_model_merges_every_view_and_counts_coverage_like_routing():
    net = build(docs())
    cov, = net.coverage
    # 10:20 has a gone worker and one below the trust floor: a hole; 20:30 only the twin (w4 is draining)
    assert cov.holes == [(10, 20)] and cov.replicas[:10] == (2,) * 10 and cov.replicas[20:] == (1,) * 10
    assert net.peers["12D3KooWw3cccccccc"].state == "gone" and not net.peers["12D3KooWw3cccccccc"].alive
    assert {p.label for p in net.peers.values() if p.name == "twin"} == {"twin·eeeeeeee", "twin·ffffffff"}
    assert net.peers["12D3KooWw1aaaaaaaa"].label == "w1"  # unambiguous names stay short
    assert net.anchors["12D3KooWanchor0001"].up and net.anchors["12D3KooWanchor0001"].local
    assert not net.anchors["12D3KooWanchor0002"].up and net.anchors["12D3KooWanchor0002"].failures == 3
    assert net.drops == {"bad_signature": 3, "libp2p.transport.tcp:error": 7, "admission.rate": 2}
    assert [r["ok"] for r in net.requests] == [True, False] and len(net.chains) == 1


def test_the_freshest_word_on_a_worker_wins():
    a, b = docs()
    b["workers"] = {"12D3KooWw3cccccccc": W("w3", 10, 20, heard_s_ago=0.5)}  # the anchor heard it just now
    net = build([a, b])
    assert net.peers["12D3KooWw3cccccccc"].state == "serving"
    assert build([a]).peers["12D3KooWw3cccccccc"].state == "gone"


def test_screen_fits_80x24_and_shows_holes_gone_workers_and_hostile_names_literally():
    net = build(docs())
    trends = Trends()
    trends.add(net.peers.values())
    out = text(screen(net, ViewState(), trends, "/data/run", 80, 24))
    lines = out.splitlines()
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert "holes 10:20" in out and "··········" in out  # the hole is drawn, not only named
    rows = rows_by_name(out, "w1", "w3", "w4", HOSTILE[:6])
    assert "gone" in rows["w3"] and "draining" in rows["w4"]
    assert HOSTILE in out  # shown as text, never as markup
    assert "twin·" in out and "sort layers" in out
    assert "✓ 24 tok 13.1 tok/s ↻ cccccccc" in out and "✗ culprit cccccccc" in out and "w1[0:10] 12ms" in out
    assert "anchor1 up" in out and "down" in out and "libp2p.transport.tcp:error" in out


def test_keys_sort_filter_help_and_quit():
    s = ViewState()
    s = on_key(s, "s")
    assert s.sort == SORTS[1]
    assert on_key(on_key(s, "r"), "r") == s
    s2 = s
    for ch in "/tw":
        s2 = on_key(s2, ch)
    assert s2.typing and s2.filter == "tw"
    s2 = on_key(on_key(s2, "i"), "\r")
    assert not s2.typing and s2.filter == "twi"
    assert on_key(s2, "q") == QUIT and on_key(on_key(s2, "/"), "q") != QUIT  # typed text is not a command
    assert on_key(on_key(s2, "/"), "\x1b").filter == ""
    assert on_key(s2, "c").filter == "" and on_key(s2, "?").help
    net = build(docs())
    assert [p.name for p in visible(net.peers.values(), s2)] == ["twin", "twin"]
    by_trust = visible(net.peers.values(), ViewState(sort="trust"))
    assert by_trust[0].trust == 0.99 and by_trust[-1].trust is None
    out = text(screen(net, on_key(ViewState(), "?"), None, "/d", 80, 24))
    assert "quit" in out and "reverse the order" in out


def test_status_report_is_words_and_tables_not_dict_reprs():
    out = text(report(build(docs())), width=120, height=200)
    assert "{" not in out and "'" not in out
    assert "gossip 2 sent, 40 received" in out and "ledger s1 120 · anchor1 121 (+1 pending)" in out


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                       max_leaves=20)
FIELDS = ["role", "name", "peer_id", "workers", "anchors", "requests", "dropped", "library_logs", "ledger",
          "trust_floor", "age_s", "stale", "layers", "state", "written_at", "links", "gossip", "uptime_s"]


def test_an_absurd_depth_in_a_status_file_is_ignored_not_allocated():
    """A depth beyond what the wire allows (hypothesis found 10**9: the coverage map allocated it, gigabytes)
    leaves that worker out of the coverage instead."""
    net = build([{"role": "seeker", "workers": {"X": {**W("X", 0, 10), "total_layers": 10 ** 12}}}])
    assert net.coverage == [] and net.peers["X"].total_layers is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.fixed_dictionaries({}, optional={f: JSONISH for f in FIELDS}), max_size=3),
       st.dictionaries(st.text(max_size=6), st.dictionaries(st.sampled_from(list(W("x", 0, 1))), JSONISH),
                       max_size=4))
def test_malformed_status_documents_never_crash_the_view(ds, workers):
    """Status files are ours, but their strings and shapes must never take the view down."""
    ds = [dict(d) for d in ds] + [{"role": "seeker", "workers": workers}]
    net = build(ds)
    text(screen(net, ViewState(sort="trust"), Trends(), "/d", 80, 24))
    text(report(net), width=100, height=100)


ESCAPES = "x\x1b[2J\x1b[H\x1b]0;PWNED\x07\u202eevil\nFAKE ROW"


def test_network_strings_never_reach_the_terminal_as_control():
    """ESC sequences (clear the screen, set the title), newlines (fake rows), bidi overrides: the wire refuses
    them in names and models, and every view replaces whatever else carries them."""
    from gtracd.errors import DecodeError
    from gtracd.wire.kinds import ENVELOPE_KINDS
    from gtracd.wire.schema import check_value

    for field in ("name", "model"):
        with pytest.raises(DecodeError, match="control or format"):
            check_value(ENVELOPE_KINDS["heartbeat"][field], ESCAPES, f"body.{field}")
    a, b = docs()
    a["workers"]["12D3KooWw1aaaaaaaa"]["name"] = ESCAPES
    a["workers"]["12D3KooWw1aaaaaaaa"]["state"] = "serving\x1b[31m"
    a["requests"][1]["error"] = "boom\x1b]0;PWNED\x07\nFAKE ROW"
    a["dropped"] = {"\x1b[2Jreason": 1}
    net = build([a, b])
    for out in (text(screen(net, ViewState(), Trends(), "/d", 100, 30), 100, 30), text(report(net), 120, 200)):
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert not any(line.startswith("FAKE ROW") for line in out.splitlines())
        assert "\ufffd" in out


def test_one_worker_cannot_repaint_the_coverage_map_or_push_it_off_screen():
    a, b = docs()
    a["workers"]["12D3KooWliar00000"] = W("liar", 0, 30, total_layers=100_000)  # the real model, a false depth
    for k in range(12):  # fake models, each with the real fingerprint's prefix
        a["workers"][f"12D3KooWfake{k:06d}"] = W(f"f{k}", 0, 5, model=FP[:12] + f"{k:020x}", total_layers=5)
    a["model"] = FP  # the seeker pins the real one
    net = build([a, b])
    assert net.coverage[0].model == FP and net.coverage[0].layers == 30 and net.coverage[0].holes == [(10, 20)]
    out = text(screen(net, ViewState(), Trends(), "/d", 80, 24))
    assert "+ 11 other model(s) announced by 11 worker(s)" in out and "peers" in out and "recent requests" in out


def test_a_name_that_mimics_a_label_gets_the_peer_id_and_narrow_terminals_keep_names():
    a, b = docs()
    a["workers"]["12D3KooWmimicmimic"] = W("twin·eeeeeeee", 20, 30)
    net = build([a, b])
    assert net.peers["12D3KooWmimicmimic"].label == "twin·eeeeeeee·micmimic"
    out = text(screen(net, ViewState(), None, "/d", 60, 20), 60, 20)
    assert "twin·eeeeeeee" in out and "twin·ffffffff" in out  # still told apart at 60 columns
    assert all(len(line) <= 60 for line in out.splitlines())


def test_escape_sequences_are_one_key():
    assert keys_of("a\x1b[Db\x1bOA\x1b") == ["a", "\x1b[D", "b", "\x1bOA", "\x1b"]
    s = on_key(on_key(ViewState(), "/"), "w")
    for k in keys_of("\x1b[D\x1b[C"):  # arrows while typing a filter: ignored, not Esc
        s = on_key(s, k)
    assert s.typing and s.filter == "w"
    assert on_key(s, "\x1b").filter == ""
