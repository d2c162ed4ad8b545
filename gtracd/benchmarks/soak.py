"""`gtracd bench soak`: does the ledger stay bounded while a busy network runs? And `--history N`: how long
does a month of history take to load and to hand to a fresh replica?

Soak (real processes on loopback): 3 anchors, K seekers emitting `--rate` trust reports/s in total (the
testbed load: signed, gossiped, submitted, admitted), a testbed fleet of heartbeating worker identities.
The rule window is shortened (`--reporter-window-s 20`, anchors `--checkpoint-s 30`) so checkpoints are
cut, signed, adopted and the logs compacted many times within the run. Midway one anchor is killed (-9)
and restarted. Every sample period, per anchor: RSS, bytes on disk (log + checkpoint), reports held,
reports folded, anti-entropy bytes per round. From the daemons' traces: when each report was emitted and
when each anchor first held it.

- convergence of a report = the last anchor's first `have` - the seeker's emit, over the reports emitted
  while all three anchors ran (those emitted during the outage count in `restart_catchup_s` instead);
- reports_lost = reports emitted that some anchor neither held nor folded into its checkpoint at the end;
- rss_slope_mib_per_h, sync_bytes_slope = least-squares slopes over each anchor's samples in steady state:
  from the second sample after its first checkpoint (the restarted anchor: after its restart); the worst
  anchor is the figure. sync_bytes_slope is in bytes per round per hour.

History (`--history N`): N synthetic signed reports over 30 days (256 reporters, 1,024 worker identities
joining and leaving through the month, 95 % successes), folded hour by hour into a chain of checkpoints as
anchors with the default settings fold them; the last checkpoint is signed by a keyring of 3 anchors and
saved with the reports after its boundary in one anchor's data directory. Then:
- anchor_restart_load_s = that anchor's process start -> ready (it has loaded checkpoint and log);
- fresh_replica_sync_s = a second anchor with an empty data directory: process start -> it holds the
  checkpoint and every report after it (its trace's last `have`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import statistics
import time
from pathlib import Path

from ..config import Settings
from ..control.replica import Replica, checkpoint_lag, rule_params
from ..daemon import lifeline
from ..daemon.node import status_mib
from ..harness.controlnet import ControlNet
from ..identity import Identity, Keystore
from ..ledger import Report, ReportLog
from ..ledger.checkpoint import boundary_for, signed_body
from ..ledger.crdt import make_checkpoint
from ..ledger.store import save_checkpoint
from ..wire.envelope import Signer
from .ledger import _pct, _wait

ANCHORS = ("a1", "a2", "a3")
WINDOW_S, CHECKPOINT_S = 20.0, 30.0  # the soak's rule window and checkpoint period (checkpoints every 30 s)


class Traces:
    """The daemons' event traces, read incrementally (complete lines only)."""

    def __init__(self, cn: ControlNet):
        self.cn = cn
        self.offsets: dict[Path, int] = {}
        self.emitted: dict[tuple, tuple[float, float]] = {}  # key -> (emit time, report ts)
        self.have: dict[tuple, dict[str, float]] = {}  # key -> anchor -> first time held

    def read(self) -> None:
        for f in sorted((self.cn.root / "events").glob("*.jsonl")):
            with open(f, "rb") as fh:
                fh.seek(self.offsets.get(f, 0))
                data = fh.read()
            end = data.rfind(b"\n") + 1
            self.offsets[f] = self.offsets.get(f, 0) + end
            for line in data[:end].splitlines():
                try:
                    e = json.loads(line)
                except ValueError:
                    continue
                if e["ev"] == "report":
                    self.emitted.setdefault(tuple(e["key"]), (e["t"], e["ts"]))
                elif e["ev"] == "have" and e["who"] in ANCHORS:
                    self.have.setdefault(tuple(e["key"]), {}).setdefault(e["who"], e["t"])


def _slope_per_h(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t seconds, y) in y per hour; None below 3 points."""
    if len(points) < 3:
        return None
    ts = [t for t, _ in points]
    ys = [y for _, y in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return 3600.0 * sum((t - mt) * (y - my) for t, y in zip(ts, ys, strict=True)) / den if den else None


def _disk_bytes(cn: ControlNet, name: str) -> int:
    d = cn.root / "anchor" / name
    return sum(f.stat().st_size for f in (d / "ledger.log", d / "checkpoint.bin") if f.exists())


def run_soak(duration: float = 600.0, rate: float = 50.0, seekers: int = 2, identities: int = 50,
             sample_s: float = 60.0, outage_s: float = 15.0, log=print) -> dict:
    per = rate / seekers
    rules = ["--reporter-window-s", str(WINDOW_S)]
    cn = ControlNet(network="bench-soak", heartbeat_s=2.0, sync_s=2.0, node_timeout_s=10.0,
                    anchor_extra=rules + ["--checkpoint-s", str(CHECKPOINT_S),
                                          # a seeker here stands for several: its reports/s must be admitted
                                          "--report-rate", str(max(5.0, 1.5 * per)),
                                          "--report-burst", str(max(50.0, 10 * per))],
                    seeker_extra=rules)
    traces = Traces(cn)
    samples: list[dict] = []
    incarnation = {a: 0 for a in ANCHORS}
    last_counters: dict[str, tuple[int, int, int]] = {}  # anchor -> (incarnation, sync bytes, sync rounds)
    try:
        cn.start(list(ANCHORS), fleet=identities, seekers={f"s{i + 1}": per for i in range(seekers)})
        t0 = time.time()
        log(f"soak: 3 anchors, {seekers} seekers x {per:g} reports/s, {identities} identities, {duration:.0f} s")
        kill_at, killed, back = t0 + duration / 2, None, None
        next_sample = t0 + sample_s
        while time.time() < t0 + duration:
            now = time.time()
            if killed is None and now >= kill_at:
                cn.kill9("a3")
                killed = time.time()
                log(f"  {killed - t0:.0f} s: a3 killed (-9)")
            if killed is not None and back is None and now >= killed + outage_s:
                cn.restart_anchor("a3")
                back = time.time()
                incarnation["a3"] += 1
                log(f"  {back - t0:.0f} s: a3 restarted and ready in {back - killed - outage_s:.1f} s")
            if now >= next_sample:
                next_sample += sample_s
                traces.read()
                row = {"t": round(now - t0, 1), "anchors": {}}
                for a in ANCHORS:
                    p = cn.procs.get(a)
                    st = (cn.status(a) or {}) if p is not None else {}
                    if p is None or st.get("pid") not in (None, p.proc.pid):
                        continue
                    c = st.get("counters", {})
                    b, r = c.get("sync_bytes", 0), c.get("sync_rounds", 0)
                    inc, pb, pr = last_counters.get(a, (incarnation[a], 0, 0))
                    if inc != incarnation[a]:
                        pb = pr = 0  # a restarted process counts from zero
                    last_counters[a] = (incarnation[a], b, r)
                    cp = st.get("checkpoint") or {}
                    row["anchors"][a] = {
                        "incarnation": incarnation[a], "rss_mib": round(status_mib(p.proc.pid, "VmRSS"), 1),
                        "heap_in_use_mib": (st.get("memory") or {}).get("heap_in_use_mib"),
                        "disk_bytes": _disk_bytes(cn, a), "reports_held": st.get("ledger", {}).get("reports"),
                        "folded": cp.get("folded", 0), "checkpoint_boundary": cp.get("boundary"),
                        "sync_bytes_per_round": round((b - pb) / (r - pr)) if r > pr else None}
                samples.append(row)
                log(f"  {row['t']:.0f} s: " + "  ".join(
                    f"{a} {v['rss_mib']} MiB {v['disk_bytes'] // 1024} KiB held {v['reports_held']} "
                    f"folded {v['folded']}" for a, v in row["anchors"].items()))
            time.sleep(0.2)
        t_end = time.time()
        # settle: reports emitted up to t_end reach every anchor (or are folded into its checkpoint)
        for n in list(cn.procs):
            if n.startswith("s"):
                cn.set_seeker_rate(n, 0.0)
        final: dict[str, dict] = {}

        def settled() -> bool:
            traces.read()
            for a in ANCHORS:
                final[a] = (cn.status(a) or {}).get("checkpoint") or {}
            return not _missing(traces, final)

        _wait(settled, 60, 1.0)
        traces.read()
        res = _soak_result(traces, samples, final, t0, t_end, killed, back, rate, seekers, identities,
                           duration, sample_s, outage_s)
        # where reports could have gone: what seekers were refused for good, what anchors dropped and why
        res["seekers_refused"] = {n: (cn.status(n) or {}).get("refused") for n in sorted(cn.procs)
                                  if n.startswith("s")}
        res["anchors_dropped"] = {a: (cn.status(a) or {}).get("admission_dropped") for a in ANCHORS}
        return res
    finally:
        cn.stop_all()
        shutil.rmtree(cn.root, ignore_errors=True)


def _missing(traces: Traces, final: dict[str, dict]) -> list[tuple]:
    """Reports emitted that some anchor neither held nor folded into its checkpoint. A report below an anchor's
    boundary counts as folded only if some anchor held it (a checkpoint folds held reports: one no anchor ever
    held, e.g. refused as below_checkpoint, is lost however old its ts)."""
    out = []
    for k, (_, ts) in traces.emitted.items():
        h = traces.have.get(k, {})
        if not h or any(a not in h and not ts < (final.get(a, {}).get("boundary") or 0.0) for a in ANCHORS):
            out.append(k)
    return out


def _soak_result(traces, samples, final, t0, t_end, killed, back, rate, seekers, identities, duration,
                 sample_s, outage_s) -> dict:
    conv_all, per_minute = [], {}
    catchup = []
    for k, (te, _) in traces.emitted.items():
        if not t0 <= te <= t_end:
            continue
        h = traces.have.get(k, {})
        if not all(a in h for a in ANCHORS):
            continue
        c = max(h.values()) - te
        if killed is not None and killed <= te < (back or t_end):
            catchup.append(h["a3"] - back if back else None)
            continue
        conv_all.append(c)
        per_minute.setdefault(int((te - t0) // sample_s), []).append(c)
    lost = _missing(traces, final)
    emitted = sum(1 for te, _ in traces.emitted.values() if t0 <= te <= t_end)
    for row in samples:  # the convergence p99 of the reports emitted in the period this sample closes
        xs = per_minute.get(int(row["t"] // sample_s) - 1, [])
        row["convergence_p99_s"] = round(_pct(xs, 0.99), 3) if xs else None
    rss_slopes, heap_slopes, sync_slopes, sync_rel = {}, {}, {}, {}
    for a in ANCHORS:
        rows = [(r["t"], r["anchors"][a]) for r in samples if a in r["anchors"]]
        inc = max((v["incarnation"] for _, v in rows), default=0)
        # steady state: from the second sample after the first checkpoint (the first adoption comes while
        # the held reports still climb to their level: reports_per_s x (lag + period))
        after = [(t, v) for t, v in rows if v["incarnation"] == inc and v["folded"] > 0][1:]
        rss_slopes[a] = _slope_per_h([(t, v["rss_mib"]) for t, v in after])
        heap_slopes[a] = _slope_per_h([(t, v["heap_in_use_mib"]) for t, v in after
                                       if v.get("heap_in_use_mib") is not None])
        pts = [(t, v["sync_bytes_per_round"]) for t, v in after if v["sync_bytes_per_round"] is not None]
        sync_slopes[a] = _slope_per_h(pts)
        if sync_slopes[a] is not None and pts:
            mean = statistics.fmean(y for _, y in pts)
            sync_rel[a] = round(sync_slopes[a] * (pts[-1][0] - pts[0][0]) / 3600.0 / mean, 3) if mean else None

    def worst(d):
        xs = [v for v in d.values() if v is not None]
        return round(max(xs, key=abs), 2) if xs else None

    return {
        "anchors": 3, "seekers": seekers, "reports_per_s": rate, "worker_identities": identities,
        "duration_s": round(t_end - t0, 1), "sample_s": sample_s, "reporter_window_s": WINDOW_S,
        "checkpoint_s": CHECKPOINT_S, "outage_s": outage_s,
        "killed_at_s": round(killed - t0, 1) if killed else None,
        "reports_emitted": emitted, "reports_lost": len(lost),
        # which, where: the first few lost reports, the anchors that lack them, when the others got them
        "lost": [{"reporter": k[0][:16], "seq": k[1], "emitted_at_s": round(traces.emitted[k][0] - t0, 2),
                  "ts": traces.emitted[k][1],
                  "held_at_s": {a: round(t - t0, 2) for a, t in traces.have.get(k, {}).items()},
                  "missing_at": [a for a in ANCHORS if a not in traces.have.get(k, {})],
                  "boundaries": {a: final.get(a, {}).get("boundary") for a in ANCHORS}} for k in lost[:10]],
        "convergence_p50_s": round(statistics.median(conv_all), 3) if conv_all else None,
        "convergence_p99_s": round(_pct(conv_all, 0.99), 3) if conv_all else None,
        "convergence_p99_worst_minute_s": max((r["convergence_p99_s"] for r in samples
                                               if r["convergence_p99_s"] is not None), default=None),
        "restart_catchup_s": round(max(x for x in catchup if x is not None), 2) if any(
            x is not None for x in catchup) else None,
        "reports_during_outage": len(catchup),
        "rss_slope_mib_per_h": worst(rss_slopes), "rss_slope_mib_per_h_by_anchor": {
            a: None if v is None else round(v, 2) for a, v in rss_slopes.items()},
        # the C heap's memory in use (glibc's count, from the daemons' status): what RSS would be without
        # the free memory malloc keeps
        "heap_in_use_slope_mib_per_h": worst(heap_slopes), "heap_in_use_slope_mib_per_h_by_anchor": {
            a: None if v is None else round(v, 2) for a, v in heap_slopes.items()},
        "sync_bytes_slope": worst(sync_slopes), "sync_bytes_slope_by_anchor": {
            a: None if v is None else round(v, 1) for a, v in sync_slopes.items()},
        "sync_bytes_change_over_run": sync_rel,
        "final_checkpoints": {a: {k: v for k, v in c.items() if k in ("boundary", "folded", "digest")}
                              for a, c in final.items()},
        "samples": samples,
        "goals": {"rss_slope_mib_per_h": "~0", "sync_bytes_slope": "~0", "reports_lost": 0,
                  "convergence_p99_s": 2.0},
    }


# ---------------------------------------------------------------------------------------------- history

DAY = 86400.0
MEASURE_S = 60.0  # the restart and the fresh sync end well within this: no checkpoint boundary may pass meanwhile
REPORTERS, WORKERS = 256, 1024


def _seed(kind: str, i: int) -> bytes:
    return hashlib.sha256(f"bench-history/{kind}/{i}".encode()).digest()


def _workers() -> list[str]:
    return [Identity(_seed("worker", i)).peer_id for i in range(WORKERS)]


_POOL: dict = {}


def _pool_init(network: str, start: float, span: float, parent: int) -> None:
    lifeline.watch(parent)  # a killed benchmark takes its signing processes with it
    _POOL.update(network=network, start=start, span=span, workers=_workers(),
                 reporters=[Identity(_seed("reporter", i)) for i in range(REPORTERS)])


def _alive(i: int, t: float) -> bool:
    """Worker i serves for 7 days, the starts spread from 6 days before the month to 1 day before its end
    (churn: about 200 serve at any time)."""
    s = _POOL["start"] - 6 * DAY + (i / WORKERS) * (_POOL["span"] + 5 * DAY)
    return s <= t < s + 7 * DAY


def _slice(args: tuple[int, float, float, int]) -> list:
    """`n` signed trust reports with ts in [a, b), from random reporters about live workers (as Reports:
    signed here, folded by the parent)."""

    idx, a, b, n = args
    rng = random.Random(idx)
    live = [w for i, w in enumerate(_POOL["workers"]) if _alive(i, (a + b) / 2)]
    now = [a]
    signers = [Signer(r, clock=lambda: now[0]) for r in _POOL["reporters"]]
    out = []
    for t in sorted(rng.uniform(a, b) for _ in range(n)):
        now[0] = t
        chain = rng.sample(live, 3)
        ok = rng.random() < 0.95
        env = signers[rng.randrange(REPORTERS)].sign("trust_report", {
            "network": _POOL["network"], "request_id": rng.randbytes(16), "model": "history-model",
            "mode": "g-trac", "chain": chain, "latency_ms": [round(rng.uniform(5, 80), 2) for _ in chain],
            "outcome": "success" if ok else "failure", "culprit": -1 if ok else rng.randrange(3), "tokens": 32})
        out.append(Report.from_envelope(env))
    return out


def run_history(n: int, log=print) -> dict:
    s = Settings()
    params, period, lag = rule_params(s), s.checkpoint_s, checkpoint_lag(s)
    cn = ControlNet(network="bench-history", heartbeat_s=s.heartbeat_s, sync_s=s.sync_s,
                    node_timeout_s=s.node_timeout_s)
    try:
        (cn.root / "events").mkdir(parents=True, exist_ok=True)
        cn.make_anchors(list(ANCHORS))
        end = time.time()
        start = end - 30 * DAY
        last = boundary_for(end, period, lag)  # the checkpoint the keyring would hold by now
        # slices end on the checkpoint period's multiples (the boundaries anchors fold at), the last at now
        first = (start // period + 1) * period
        edges = [start] + [first + i * period for i in range(int((end - first) // period) + 1)] + [end]
        edges = sorted(set(e for e in edges if start <= e <= end))
        rate = n / (end - start)
        slices = [(i, a, b, round(rate * (b - a))) for i, (a, b) in enumerate(zip(edges, edges[1:], strict=False))]
        t_gen = time.perf_counter()
        cp, tail, total = None, [], 0
        log(f"history: {n:,} signed reports over 30 days in {len(slices)} slices; folding up to "
            f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime(last))} UTC")
        ctx = multiprocessing.get_context("spawn")  # two processes sign; the chain of checkpoints folds here
        with ctx.Pool(2, _pool_init, (cn.network, start, end - start, os.getpid())) as pool:
            day: list = []
            for k, rs in enumerate(pool.imap(_slice, slices, chunksize=2)):
                total += len(rs)
                b = slices[k][2]
                if b > last:
                    tail += rs
                    continue
                day += rs
                # fold a day at a time (anchors fold every hour; the state is the same, and a checkpoint's
                # cost is decoding and encoding the whole state: 720 of them would take the bench an hour)
                if b == last or (b - first) % DAY == 0:
                    cp = make_checkpoint(cp, day, b, params)
                    day = []
                if k % 72 == 0:
                    log(f"  {total:,} reports signed and folded ({time.perf_counter() - t_gen:.0f} s)")
        gen_s = time.perf_counter() - t_gen
        # making the history took minutes: if a boundary passed meanwhile (or is about to, while we measure),
        # fold up to it as the anchors would have, so the measured restart and sync are not also a1 cutting a
        # checkpoint of the tail (that made two runs' figures differ by the hour's phase)
        while boundary_for(time.time() + MEASURE_S, period, lag) > last:
            wait = boundary_for(time.time() + MEASURE_S, period, lag) + lag - time.time()
            if wait > 0:
                time.sleep(wait)
            nxt = boundary_for(time.time(), period, lag)
            cp = make_checkpoint(cp, [r for r in tail if r.ts < nxt], nxt, params)
            tail, last = [r for r in tail if r.ts >= nxt], nxt
            log(f"  a boundary passed while the history was made: folded up to it ({len(tail):,} reports after)")
        ks = Keystore(cn.keystore)
        proof = [Signer(ks.load(a)).sign("ledger_checkpoint", signed_body(cp, cn.network)).raw for a in ANCHORS]
        d = cn.root / "anchor" / "a1"
        d.mkdir(parents=True)
        save_checkpoint(d / "checkpoint.bin", cp, proof)
        ReportLog(d / "ledger.log").append([r.raw for r in tail])
        log(f"  {cp.count:,} folded, state {len(cp.state) / 2**20:.2f} MiB; {len(tail):,} reports after the "
            f"boundary ({gen_s:.0f} s to make)")
        t = time.perf_counter()
        rep = Replica(d / "ledger.log", params)
        replica_load_s = time.perf_counter() - t
        assert rep.ledger.checkpoint == cp and len(rep.ledger) == len(tail), "the preloaded replica does not load"
        del rep
        t = time.time()
        cn.restart_anchor("a1")
        restart_s = time.time() - t
        st1 = cn.status("a1") or {}
        log(f"  a1 restarted in {restart_s:.2f} s (its replica loads in {replica_load_s:.2f} s)")
        want = {(r.reporter.hex(), r.seq) for r in tail}
        t = time.time()
        cn.restart_anchor("a2")  # an empty data directory: a fresh replica
        ready_s = time.time() - t

        def synced():
            # the status first (written every second): parsing the whole trace on every poll cost this
            # 2-core machine a third of a core, taken from the anchor being measured
            st = cn.status("a2") or {}
            if ((st.get("checkpoint") or {}).get("folded") != cp.count
                    or (st.get("ledger") or {}).get("reports", 0) < len(tail)):
                return None
            have = {tuple(e["key"]): e["t"] for e in cn.events("a2") if e["ev"] == "have"}
            return want <= have.keys() and max(have[k] for k in want)

        done, limit = None, time.time() + 120
        while done is None and time.time() < limit:
            done = synced() or None
            time.sleep(0.25)
        fresh_s = (done - t) if done else float("inf")
        st2 = cn.status("a2") or {}
        log(f"  a fresh anchor held the checkpoint and all {len(tail):,} later reports {fresh_s:.2f} s after its "
            f"start (ready in {ready_s:.2f} s)")
        return {
            "history_reports": total, "reporters": REPORTERS, "worker_identities": WORKERS, "days": 30,
            "checkpoint_s": period, "folded": cp.count, "checkpoint_state_mib": round(len(cp.state) / 2**20, 3),
            "reports_after_checkpoint": len(tail),
            "log_mib": round((d / "ledger.log").stat().st_size / 2**20, 2),
            "make_history_s": round(gen_s, 1),
            "replica_load_s": round(replica_load_s, 3), "anchor_restart_load_s": round(restart_s, 2),
            "restarted_anchor_reports": (st1.get("ledger") or {}).get("reports"),
            "fresh_replica_ready_s": round(ready_s, 2), "fresh_replica_sync_s": round(fresh_s, 2),
            "fresh_replica_reports": (st2.get("ledger") or {}).get("reports"),
            "fresh_replica_sync_bytes": (st2.get("counters") or {}).get("sync_bytes"),
            "goals": {"fresh_replica_sync_s": 10.0, "anchor_restart_load_s": 5.0},
        }
    finally:
        cn.stop_all()
        shutil.rmtree(cn.root, ignore_errors=True)


def _count(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(text[-1:], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def main(args: argparse.Namespace) -> int:
    quiet = args.json
    say = (lambda *a, **k: None) if quiet else print
    res: dict = {}
    if args.duration > 0:
        res["soak"] = run_soak(args.duration, args.rate, args.seekers, sample_s=args.sample_s, log=say)
    if args.history:
        res["history"] = run_history(_count(args.history), log=say)
    if args.record:
        Path(args.record).write_text(json.dumps(res, indent=1) + "\n")
    if quiet:
        print(json.dumps(res))
        return 0
    if "soak" in res:
        r = res["soak"]
        print(f"soak: {r['reports_emitted']} reports over {r['duration_s']} s; lost {r['reports_lost']} (goal 0)")
        print(f"  convergence p50 {r['convergence_p50_s']} s  p99 {r['convergence_p99_s']} s (goal <= 2.0), "
              f"worst minute p99 {r['convergence_p99_worst_minute_s']} s; a3 caught up "
              f"{r['reports_during_outage']} outage reports {r['restart_catchup_s']} s after its restart")
        print(f"  in steady state (from the second sample after the first checkpoint): RSS slope {r['rss_slope_mib_per_h']} MiB/h, anti-entropy bytes per "
              f"round slope {r['sync_bytes_slope']} /h (goals ~0)")
    if "history" in res:
        h = res["history"]
        print(f"history: {h['history_reports']:,} reports, {h['folded']:,} folded ({h['checkpoint_state_mib']} "
              f"MiB of state), {h['reports_after_checkpoint']:,} after; anchor restart {h['anchor_restart_load_s']} s "
              f"(goal <= 5), fresh replica synced in {h['fresh_replica_sync_s']} s (goal <= 10)")
    return 0
