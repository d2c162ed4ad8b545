"""The pure parts of operating a daemon: metrics from status snapshots (bounded label sets, Prometheus text the
reference parser reads), histograms, JSON log lines and size-based rotation."""

from __future__ import annotations

import json
import logging

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from gtracd.ops import logs
from gtracd.ops.histogram import Histogram, Tally, cumulative
from gtracd.ops.metrics import PEER_SERIES, exposition


def parse(text: bytes) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def seeker_snapshot(n_workers: int) -> dict:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v)
    return {"role": "seeker", "network": "n", "uptime_s": 3.0, "dropped": {"replay": 2, "wire_version": 1},
            "accepted": 7, "readiness": {"ready": True, "why": "ok"},
            "workers": {f"peer{i:05d}": {"alive": i % 3 != 0, "trust": (i % 100) / 100, "latency_ms": 10.0 + i}
                        for i in range(n_workers)},
            "observed": {"outcomes": {"ok": 3, "no_route": 1}, "tokens": 40, "ttft": h.snapshot(),
                         "repairs": {"timeout": 1}},
            "ledger": {"reports": 5}, "anchors": {"A": {"reachable": True}}}


def test_a_seeker_snapshot_exports_under_prometheus_names_the_parser_reads():
    ss = parse(exposition(lambda: seeker_snapshot(4), (1, 2), "9.9"))
    assert ss[("gtracd_build_info", (("network", "n"), ("role", "seeker"), ("version", "9.9"), ("wire_max", "2"),
                                     ("wire_min", "1")))] == 1
    assert ss[("gtracd_seeker_requests_total", (("outcome", "ok"),))] == 3
    assert ss[("gtracd_seeker_requests_total", (("outcome", "no_route"),))] == 1
    assert ss[("gtracd_envelopes_dropped_total", (("reason", "wire_version"),))] == 1
    assert ss[("gtracd_seeker_ttft_seconds_bucket", (("le", "0.1"),))] == 1
    assert ss[("gtracd_seeker_ttft_seconds_bucket", (("le", "1.0"),))] == 2
    assert ss[("gtracd_seeker_ttft_seconds_bucket", (("le", "+Inf"),))] == 3
    assert ss[("gtracd_seeker_ttft_seconds_count", ())] == 3
    assert ss[("gtracd_anchor_reachable", (("anchor", "A"),))] == 1
    assert ss[("gtracd_ready", ())] == 1


def test_per_peer_series_are_bounded_however_many_workers_the_network_announces():
    ss = parse(exposition(lambda: seeker_snapshot(5000)))
    trust = [dict(k[1])["peer"] for k in ss if k[0] == "gtracd_worker_trust"]
    assert len(trust) == PEER_SERIES
    bands = {dict(k[1])["trust_band"]: v for k, v in ss.items() if k[0] == "gtracd_workers"}
    assert sum(bands.values()) == 5000  # every worker counted, in a fixed set of bands
    assert len(bands) <= 6


def test_a_reason_tally_is_bounded():
    t = Tally()
    for i in range(1000):
        t.add(f"r{i}")
    assert len(t.snapshot()) <= Tally.MAX_KEYS + 1 and t.snapshot()["other"] == 1000 - Tally.MAX_KEYS


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_histogram_buckets_are_cumulative_and_end_with_the_count(values):
    h = Histogram((0.5, 1.0, 10.0))
    for v in values:
        h.observe(v)
    c = cumulative(h.snapshot())
    assert [le for le, _ in c] == ["0.5", "1.0", "10.0", "+Inf"]
    assert [n for _, n in c] == sorted(n for _, n in c) and c[-1][1] == len(values) == h.count
    assert c[0][1] == sum(1 for v in values if v <= 0.5)


def test_garbage_in_a_snapshot_is_skipped_not_fatal():
    bad = {"role": "anchor", "uptime_s": "x", "dropped": [1], "gossip": {"sent": {"t": "many"}}, "workers": {"p": 3},
           "ledger": None, "anchors": {"a": {"ok_at": True}}, "counters": {"pulled": None}}
    ss = parse(exposition(lambda: bad))
    assert ("gtracd_uptime_seconds", ()) not in ss


def test_json_log_lines_parse_and_the_file_rotates_by_size(tmp_path):
    path = tmp_path / "d.log"
    logs.configure("info", "json", str(path), max_mib=0.001, backups=2)
    try:
        log = logging.getLogger("gtracd.test")
        for i in range(60):
            log.info("line %d with \"quotes\"\nand a newline", i)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        logs.configure("warning")
    files = sorted(tmp_path.glob("d.log*"))
    assert len(files) == 3  # the live file and two rotated ones: older ones deleted
    recs = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert all({"ts", "time", "level", "logger", "msg", "pid"} <= set(r) for r in recs)
    assert any(r["level"] == "error" and "ValueError: boom" in r["exc"] for r in recs)
    assert any(r["msg"].endswith('"quotes"\nand a newline') for r in recs)
