"""Prometheus metrics from a daemon's status snapshot (pure: a snapshot in, metric families out).

Every daemon already describes its state as a status snapshot (`daemon.node.Node.status`: what its status
file holds, rewritten once a second); the exporter turns a snapshot taken at scrape time into Prometheus
families, so `/metrics` and `gtracd status --json` always agree.

Names follow Prometheus conventions: `gtracd_<what>_total` for counters, base units (`_seconds`, `_bytes`),
a `role` only in `gtracd_build_info` (each daemon is its own scrape target).

Label sets are bounded. Reasons and outcomes come from closed sets (error codes, verdicts, drop reasons) or
are capped (`ops.histogram.Tally`). Peers are what the network chooses, so per-peer series are bounded on
purpose: per-worker trust and latency only for at most `PEER_SERIES` workers (the live ones with the most
trust, then by peer id; labelled by peer id, never by the self-chosen name), and every known worker counted
in fixed trust bands (`gtracd_workers{trust_band}`); per-anchor series only for keyring anchors, which this
device's operator chose.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from .histogram import cumulative

PEER_SERIES = 32
TRUST_BANDS = (0.5, 0.8, 0.9, 0.96, 0.99, 1.0)  # upper bounds; 0.96 is the default trust floor
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(x) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


class _Out:
    """Families collected in order; a family with no sample is left out."""

    def __init__(self):
        self.fams: list[Metric] = []

    def _family(self, cls, name: str, doc: str, label_names: list[str], rows) -> None:
        f = cls(name, doc, labels=label_names)
        for lv, v in rows:
            if _num(v) is not None:
                f.add_metric([str(x) for x in lv], _num(v))
        if f.samples:
            self.fams.append(f)

    def counter(self, name: str, doc: str, value, labels: dict | None = None) -> None:
        self.counters(name, doc, list(labels or {}), [(list((labels or {}).values()), value)])

    def counters(self, name: str, doc: str, label_names: list[str], rows: Iterable[tuple[list[str], object]]) -> None:
        self._family(CounterMetricFamily, name, doc, label_names, rows)

    def by(self, name: str, doc: str, label: str, d) -> None:
        """A counter per key of a {reason: n} map."""
        self.counters(name, doc, [label], [([k], v) for k, v in sorted(_dict(d).items())])

    def gauge(self, name: str, doc: str, value, labels: dict | None = None) -> None:
        self.gauges(name, doc, list(labels or {}), [(list((labels or {}).values()), value)])

    def gauges(self, name: str, doc: str, label_names: list[str], rows: Iterable[tuple[list[str], object]]) -> None:
        self._family(GaugeMetricFamily, name, doc, label_names, rows)

    def histogram(self, name: str, doc: str, snap) -> None:
        if not isinstance(snap, dict) or "counts" not in snap:
            return
        f = HistogramMetricFamily(name, doc, labels=[])
        f.add_metric([], cumulative(snap), snap["sum"])
        self.fams.append(f)


def families(st: dict, wire: tuple[int, int] | None = None, version: str = "") -> list[Metric]:
    """The metric families of one status snapshot (any role)."""
    o = _Out()
    role = st.get("role", "")
    info = {"version": version, "role": role, "network": st.get("network", "")}
    if wire is not None:
        info.update(wire_min=str(wire[0]), wire_max=str(wire[1]))
    o.gauge("gtracd_build_info", "gtracd version, role and network of this daemon (always 1)", 1, info)
    o.gauge("gtracd_uptime_seconds", "seconds since this daemon started", st.get("uptime_s"))
    ready = _dict(st.get("readiness"))
    if "ready" in ready:
        o.gauge("gtracd_ready", "1 when this daemon serves what its role offers (see /health for why not)",
                1 if ready["ready"] else 0)
    _common(o, st)
    kr = _dict(st.get("keyring"))
    if kr:
        o.gauge("gtracd_keyring_serial", "the anchor keyring's serial (every device of a network should agree)",
                kr.get("serial"))
        o.gauge("gtracd_keyring_anchors", "anchors in the keyring", kr.get("anchors"))
        o.by("gtracd_keyring_updates_refused_total", "keyring updates refused, by reason (stale, gap, quorum, fork, "
             "conflict, ...)", "reason", kr.get("refused"))
        o.gauge("gtracd_keyring_updates_waiting", "keyring updates held until a missing earlier one arrives",
                len(kr["waiting"]) if isinstance(kr.get("waiting"), list) else None)
    if isinstance(st.get("ledger"), dict):
        _ledger(o, st)
    if isinstance(st.get("workers"), dict):
        _workers(o, st)
    if role == "seeker":
        _seeker(o, st)
    if role == "worker":
        _worker(o, st)
    if role == "anchor":
        _anchor(o, st)
    return o.fams


def _common(o: _Out, st: dict) -> None:
    o.counter("gtracd_envelopes_accepted_total", "signed control messages admitted", st.get("accepted"))
    o.by("gtracd_envelopes_dropped_total", "signed control messages dropped, by reason", "reason", st.get("dropped"))
    g = _dict(st.get("gossip"))
    o.by("gtracd_gossip_sent_total", "gossip messages published, by topic", "topic", g.get("sent"))
    o.by("gtracd_gossip_received_total", "gossip messages received, by topic", "topic", g.get("received"))
    o.counter("gtracd_gossip_publish_errors_total", "gossip publishes that failed", g.get("publish_errors"))
    o.counter("gtracd_gossip_rejected_total", "gossip messages the router rejected", g.get("rejected"))
    o.gauges("gtracd_gossip_topic_peers", "peers subscribed to each topic", ["topic"],
             [([t], n) for t, n in sorted(_dict(g.get("topic_peers")).items())])
    ln = _dict(st.get("links"))
    o.gauge("gtracd_connections", "peers connected now", ln.get("connected"))
    o.gauge("gtracd_peers_kept", "peers this daemon keeps connections to (bootstrap, anchors, ...)", ln.get("keep"))
    o.gauge("gtracd_peers_known", "peers with a known address", ln.get("known"))
    o.counter("gtracd_dial_failures_total", "dials that failed", ln.get("dial_failures"))
    o.by("gtracd_library_log_records_total", "libp2p log records counted instead of printed", "logger",
         st.get("library_logs"))
    mem = _dict(st.get("memory"))
    rss = _num(mem.get("rss_mib"))
    o.gauge("gtracd_resident_memory_bytes", "resident set size", None if rss is None else rss * 2**20)
    heap = _num(mem.get("heap_in_use_mib"))
    o.gauge("gtracd_heap_in_use_bytes", "C heap in use", None if heap is None else heap * 2**20)
    lag = _dict(st.get("loop_lag"))
    o.gauge("gtracd_event_loop_lag_seconds", "event loop lag, worst of the recent window",
            None if _num(lag.get("recent_max_ms")) is None else lag["recent_max_ms"] / 1000)


def _ledger(o: _Out, st: dict) -> None:
    led = _dict(st.get("ledger"))
    o.gauge("gtracd_ledger_reports", "trust reports held in this ledger replica", led.get("reports"))
    o.gauge("gtracd_ledger_reporters", "distinct reporters in this ledger replica", led.get("reporters"))
    if led.get("last_pull_age_s") is not None:
        o.gauge("gtracd_ledger_pull_age_seconds", "seconds since the last successful pull from an anchor",
                led.get("last_pull_age_s"))
    anchors = _dict(st.get("anchors"))
    o.gauges("gtracd_anchor_reachable", "keyring anchors: 1 when connected now", ["anchor"],
             [([a], 1 if _dict(v).get("reachable") else 0) for a, v in sorted(anchors.items())])
    cps = _dict(st.get("checkpoints"))
    o.by("gtracd_checkpoint_events_total", "ledger checkpoints signed, adopted, mismatched", "event", cps)


def _workers(o: _Out, st: dict) -> None:
    rows = [(pid, r) for pid, r in _dict(st.get("workers")).items() if isinstance(r, dict)]
    bands: dict[str, int] = {f"{b:g}": 0 for b in TRUST_BANDS}
    for _, r in rows:
        t = _num(r.get("trust"))
        if t is None:
            continue
        for b in TRUST_BANDS:
            if t <= b:
                bands[f"{b:g}"] += 1
                break
    o.gauges("gtracd_workers", "known workers by trust band (le: trust at most this, above the band below)",
             ["trust_band"], [([k], v) for k, v in bands.items()])
    o.gauge("gtracd_workers_alive", "workers heard within node_timeout_s", sum(1 for _, r in rows if r.get("alive")))
    shown = sorted(rows, key=lambda pr: (not pr[1].get("alive"), -(_num(pr[1].get("trust")) or 0.0), pr[0]))
    shown = shown[:PEER_SERIES]
    o.gauges("gtracd_worker_trust", f"trust of a worker (at most {PEER_SERIES} series: live, most trusted first)",
             ["peer"], [([pid], r.get("trust")) for pid, r in shown])
    o.gauges("gtracd_worker_latency_seconds", "effective latency estimate of a worker (same workers as trust)",
             ["peer"], [([pid], None if _num(r.get("latency_ms")) is None else r["latency_ms"] / 1000)
              for pid, r in shown])
    if _num(st.get("trust_floor")) is not None:
        o.gauge("gtracd_trust_floor", "tau_min: workers below it are not routed", st["trust_floor"])
    if "outbox" in st:
        o.gauge("gtracd_outbox_reports", "signed trust reports not yet acknowledged by an anchor", st.get("outbox"))
    if isinstance(st.get("counters"), dict) and st.get("role") != "anchor" and "reports_sent" in st["counters"]:
        c = st["counters"]
        o.counter("gtracd_reports_sent_total", "trust reports submitted to anchors", c.get("reports_sent"))
        o.counter("gtracd_reports_acked_total", "trust reports anchors acknowledged", c.get("reports_acked"))
        o.counter("gtracd_reports_refused_total", "trust reports anchors refused for good", c.get("reports_refused"))
        o.counter("gtracd_ledger_pulls_total", "anti-entropy pulls from anchors", c.get("pulls"))
        o.counter("gtracd_ledger_pull_failures_total", "anti-entropy pulls that failed", c.get("pull_failures"))


def _seeker(o: _Out, st: dict) -> None:
    obs = _dict(st.get("observed"))
    o.by("gtracd_seeker_requests_total", "requests ended, by outcome (ok, a failure code, cancelled, busy)",
         "outcome", obs.get("outcomes"))
    o.counter("gtracd_seeker_tokens_total", "tokens generated", obs.get("tokens"))
    o.counter("gtracd_seeker_prompt_tokens_total", "prompt tokens prefilled or reused", obs.get("prompt_tokens"))
    o.counter("gtracd_seeker_reused_tokens_total", "prompt tokens a kept conversation's cache saved",
              obs.get("reused_tokens"))
    o.by("gtracd_seeker_repairs_total", "hops repaired, by verdict (refusal, timeout, transport, wrong_output, ...)",
         "verdict", obs.get("repairs"))
    o.by("gtracd_seeker_spot_checks_total", "spot-check events (hops checked, calls compared, mismatches, ...)",
         "event", obs.get("spot_checks"))
    o.by("gtracd_seeker_speculation_total", "speculative decoding: verifying trips, draft tokens sent, draft tokens kept",
         "event", obs.get("speculation"))
    o.histogram("gtracd_seeker_ttft_seconds", "request in to first token out", obs.get("ttft"))
    o.histogram("gtracd_seeker_token_seconds", "per-token latency: one decode step through the whole chain",
                obs.get("token"))
    svc = _dict(st.get("service"))
    o.gauge("gtracd_seeker_contexts", "conversations kept open for reuse", svc.get("contexts"))
    o.gauge("gtracd_seeker_requests_in_flight", "requests being served now", obs.get("in_flight"))


def _worker(o: _Out, st: dict) -> None:
    o.gauge("gtracd_worker_sessions", "KV-cache sessions open", st.get("sessions"))
    o.gauge("gtracd_worker_cache_free_tokens", "KV-cache tokens free", st.get("free_tokens"))
    lay = st.get("layers")
    if isinstance(lay, list) and len(lay) == 2:
        o.gauge("gtracd_worker_layers", "layers hosted", lay[1] - lay[0])
    o.gauges("gtracd_worker_state", "1 for the state this worker announces", ["state"],
             [([s], 1 if st.get("state") == s else 0) for s in ("joining", "loading", "serving", "draining")])
    c = _dict(st.get("counters"))
    o.counter("gtracd_worker_frames_total", "inference frames served", c.get("frames"))
    o.counter("gtracd_worker_sessions_opened_total", "sessions opened", c.get("sessions"))
    o.counter("gtracd_worker_bad_frames_total", "frames refused as malformed", c.get("bad_frames"))
    o.counter("gtracd_worker_internal_errors_total", "internal errors", c.get("internal"))
    o.by("gtracd_worker_refusals_total", "requests refused, by code", "code", st.get("refusals"))
    b = _dict(st.get("batching"))
    o.counter("gtracd_worker_batch_passes_total", "forward passes computed", b.get("passes"))
    o.counter("gtracd_worker_batched_steps_total", "decode steps computed in those passes (steps / passes: the "
              "mean batch size)", b.get("steps"))
    o.histogram("gtracd_worker_batch_size", "decode steps per forward pass", _dict(st.get("observed")).get("batch"))


def _anchor(o: _Out, st: dict) -> None:
    led = _dict(st.get("ledger"))
    o.counter("gtracd_anchor_reports_admitted_total", "reports admitted", led.get("admitted"))
    o.gauge("gtracd_anchor_reports_pending", "reports waiting for their worker to be known", led.get("pending"))
    o.gauge("gtracd_ledger_equivocations", "reporters seen signing two reports with one seq", led.get("equivocations"))
    o.by("gtracd_anchor_reports_dropped_total", "reports not admitted, by reason", "reason",
         st.get("admission_dropped"))
    o.by("gtracd_anchor_quota_refused_total", "reports refused by a reporter's quota, by reason", "reason",
         led.get("quota_refused"))
    c = _dict(st.get("counters"))
    o.counter("gtracd_anchor_sync_rounds_total", "anti-entropy rounds with other anchors", c.get("sync_rounds"))
    o.counter("gtracd_anchor_sync_failures_total", "anti-entropy rounds that failed", c.get("sync_failures"))
    o.counter("gtracd_anchor_sync_pulled_total", "reports pulled by anti-entropy", c.get("pulled"))
    o.counter("gtracd_anchor_sync_pushed_total", "reports pushed by anti-entropy", c.get("pushed"))
    o.counter("gtracd_anchor_sync_bytes_total", "bytes moved by anti-entropy", c.get("sync_bytes"))
    o.counter("gtracd_anchor_reports_submitted_total", "reports seekers submitted", c.get("submitted"))
    o.counter("gtracd_anchor_deltas_sent_total", "ledger deltas gossiped", c.get("deltas_sent"))
    o.counter("gtracd_anchor_deltas_received_total", "ledger deltas received", c.get("deltas_received"))
    o.counter("gtracd_anchor_bad_reports_total", "reports refused by signature or schema", c.get("bad_reports"))
    o.gauge("gtracd_anchor_known_workers", "workers the anchor knows (heartbeats)", st.get("known_workers"))
    now = _num(st.get("written_at"))
    rows = []
    for a, v in sorted(_dict(st.get("anchors")).items()):
        ok_at = _num(_dict(v).get("ok_at"))
        if now is not None and ok_at is not None:
            rows.append(([a], max(0.0, now - ok_at)))
    o.gauges("gtracd_anchor_sync_lag_seconds", "seconds since the last good anti-entropy round with a peer anchor",
             ["anchor"], rows)


class _Snapshot(Collector):
    def __init__(self, source, wire, version):
        self.source, self.wire, self.version = source, wire, version

    def collect(self):
        st = self.source()
        return families(st, self.wire, self.version) if isinstance(st, dict) else []


def exposition(source, wire: tuple[int, int] | None = None, version: str = "") -> bytes:
    """The Prometheus text exposition of the snapshot `source()` returns."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Snapshot(source, wire, version))
    return generate_latest(reg)
