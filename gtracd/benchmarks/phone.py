"""`gtracd bench phone`: how much memory a seeker and an anchor take in this install.

Run it from the phone-profile venv (`make test-phone` builds .venv-phone: libp2p without the compiled packages
gtracd never calls, no torch) to measure what a phone would carry. Real processes on loopback: two anchors,
a testbed fleet of heartbeating worker identities, a busy seeker sending trust reports (so ledgers grow and
deltas flow), and the measured seeker (`serve`: heartbeats, ledger replica, anti-entropy). Every 2 s the RSS
of each anchor and of the measured seeker is sampled; the last line is JSON with the peaks (goal <= 120 MiB),
whether torch was ever loaded and which stand-ins the daemons used (from their status).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from ..daemon.node import status_mib
from ..harness.controlnet import ControlNet

GOAL_MIB = 120.0


def _rss_mib(pid: int) -> float | None:
    try:
        mib = status_mib(pid, "VmRSS")
    except OSError:  # the process is gone
        return None
    return None if math.isnan(mib) else mib  # a zombie has no VmRSS


def run(duration: float, identities: int, rate: float) -> dict:
    cn = ControlNet(network="bench-phone", heartbeat_s=2.0, sync_s=2.0, node_timeout_s=10.0)
    cn.start(["a1", "a2"], fleet=identities, seekers={"busy": rate, "phone": 0.0})
    measured = {"anchor a1": cn.procs["a1"], "anchor a2": cn.procs["a2"], "seeker phone": cn.procs["phone"]}
    samples: dict[str, list[float]] = {k: [] for k in measured}
    try:
        t_end = time.monotonic() + duration
        while time.monotonic() < t_end:
            for k, p in measured.items():
                mib = _rss_mib(p.proc.pid)
                if mib is not None:
                    samples[k].append(mib)
            time.sleep(2.0)  # sampling other processes: nothing to await
        st = {n: cn.status(n) or {} for n in ("a1", "a2", "phone")}
    finally:
        cn.stop_all()
    peak = {k: round(max(v), 1) for k, v in samples.items() if v}
    return {
        "python": sys.version.split()[0], "duration_s": duration, "identities": identities, "report_rate": rate,
        "rss_peak_mib": peak, "rss_last_mib": {k: round(v[-1], 1) for k, v in samples.items() if v},
        "anchor_rss_peak_mib": max(v for k, v in peak.items() if k.startswith("anchor")),
        "seeker_rss_peak_mib": peak["seeker phone"], "goal_mib": GOAL_MIB,
        "ledger_reports": {n: (s.get("ledger") or {}).get("reports") for n, s in st.items()},
        "workers_heard_by_seeker": len(st["phone"].get("workers") or {}),
        "torch_loaded": any((s.get("python") or {}).get("torch_loaded") for s in st.values()),
        "standins": sorted({m for s in st.values() for m in (s.get("python") or {}).get("standins", [])}),
    }


def main(args: argparse.Namespace) -> int:
    r = run(args.duration, args.identities, args.rate)
    if not args.json:
        for k, v in r["rss_peak_mib"].items():
            print(f"{k}: peak RSS {v:.1f} MiB (last {r['rss_last_mib'][k]:.1f} MiB)")
        print(f"torch loaded: {r['torch_loaded']}; stand-ins used: {', '.join(r['standins']) or 'none'}; "
              f"seeker heard {r['workers_heard_by_seeker']} workers; ledgers {r['ledger_reports']}")
    if args.record:
        Path(args.record).write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps(r))
    return 0
