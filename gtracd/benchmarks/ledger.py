"""`gtracd bench ledger`: control-plane convergence on loopback, real processes.

3 anchors, 2 seekers emitting trust reports (the testbed load: real signing, gossip, direct submission and
validation; chains over live identities), 1 testbed fleet announcing 50 worker identities with heartbeats
every 2 s. Every daemon traces when it first holds each report; on one machine the clocks agree, so

- convergence of a report = the last replica's `have` time - the seeker's emit time, over all 5 replicas;
- heal convergence = after a partition {a1, a2, s1, fleet} | {a3, s2} with reports flowing on both sides,
  the time from the heal until every replica holds every report emitted before it;
- msgs_per_s = gossip messages published per second, network-wide (deliveries reported alongside);
- cpu_pct_per_process = CPU time / wall time of each process over the steady-state window.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time

from ..harness.controlnet import ControlNet

REPLICAS = ("a1", "a2", "a3", "s1", "s2")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def _wait(pred, timeout: float, step: float = 0.2) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _gossip_totals(cn: ControlNet) -> tuple[int, int]:
    sent = recv = 0
    for name in cn.procs:
        st = cn.status(name) or {}
        g = st.get("gossip", {})
        sent += sum(g.get("sent", {}).values())
        recv += sum(g.get("received", {}).values())
    return sent, recv


def run(duration: float = 30.0, rate: float = 2.0, identities: int = 50, heal_after: float = 10.0) -> dict:
    cn = ControlNet(network="bench-ledger", heartbeat_s=2.0, sync_s=2.0, node_timeout_s=10.0)
    try:
        cn.start(["a1", "a2", "a3"], fleet=identities, seekers={"s1": rate, "s2": rate})
        # warm up: every replica has seen a report (heartbeats heard, meshes formed)
        _wait(lambda: any(len(w) == len(REPLICAS) for w in cn.holders().values()), 30)
        time.sleep(2)
        pids = {n: p.proc.pid for n, p in cn.procs.items()}
        cpu0 = {n: _cpu_s(pid) for n, pid in pids.items()}
        g0 = _gossip_totals(cn)
        t0 = time.time()
        time.sleep(duration)
        t1 = time.time()
        cpu1 = {n: _cpu_s(pid) for n, pid in pids.items()}
        g1 = _gossip_totals(cn)
        time.sleep(3)  # let the window's last reports land
        ev = cn.events()
        emitted = {tuple(e["key"]): e["t"] for e in ev if e["ev"] == "report" and t0 <= e["t"] <= t1}
        have: dict[tuple, dict[str, float]] = {}
        for e in ev:
            if e["ev"] == "have":
                have.setdefault(tuple(e["key"]), {}).setdefault(e["who"], e["t"])
        conv, missing = [], 0
        for k, t in emitted.items():
            h = have.get(k, {})
            if all(r in h for r in REPLICAS):
                conv.append(max(h[r] for r in REPLICAS) - t)
            else:
                missing += 1
        # ---- partition and heal
        cn.partition([["a1", "a2", "s1", "fleet"], ["a3", "s2"]])
        time.sleep(heal_after)
        th = time.time()
        cn.heal()
        before = [k for k, e in ((tuple(e["key"]), e) for e in cn.events() if e["ev"] == "report") if e["t"] < th]

        def healed() -> bool:
            h = cn.holders()
            return all(set(REPLICAS) <= h.get(k, set()) for k in before)

        ok = _wait(healed, 60, 0.1)
        hv = {}
        for e in cn.events():
            if e["ev"] == "have":
                hv.setdefault(tuple(e["key"]), {}).setdefault(e["who"], e["t"])
        heal_s = max((max(hv[k][r] for r in REPLICAS) - th for k in before if k in hv
                      and all(r in hv[k] for r in REPLICAS)), default=0.0)
        heal_s = max(0.0, heal_s) if ok else float("inf")
        # how far apart the two sides were when the partition healed (0 would mean the cut did nothing)
        divergent = sum(1 for k in before if not all(hv.get(k, {}).get(r, float("inf")) <= th for r in REPLICAS))
        span = t1 - t0
        statuses = {n: cn.status(n) or {} for n in cn.procs}
        dropped = {n: {**st.get("dropped", {}), **{f"admission.{k}": v for k, v in
                                                    st.get("admission_dropped", {}).items()}}
                   for n, st in statuses.items()}
        return {
            "anchors": 3, "seekers": 2, "worker_identities": identities, "heartbeat_s": 2.0,
            "reports_per_s_per_seeker": rate, "window_s": round(span, 1), "reports_in_window": len(emitted),
            "converged": len(conv), "not_converged": missing,
            "convergence_p50_s": round(statistics.median(conv), 3) if conv else None,
            "convergence_p99_s": round(_pct(conv, 0.99), 3) if conv else None,
            "convergence_max_s": round(max(conv), 3) if conv else None,
            "heal_convergence_s": round(heal_s, 3), "partition_s": heal_after,
            "reports_across_heal": len(before), "reports_divergent_at_heal": divergent,
            "msgs_per_s": round((g1[0] - g0[0]) / span, 2),
            "msgs_delivered_per_s": round((g1[1] - g0[1]) / span, 2),
            "cpu_pct_per_process": {n: round(100 * (cpu1[n] - cpu0[n]) / span, 1) for n in pids},
            "dropped": dropped,
            "goals": {"convergence_p99_s": 2.0, "heal_convergence_s": 5.0},
        }
    finally:
        cn.stop_all()
        shutil.rmtree(cn.root, ignore_errors=True)


def main(args: argparse.Namespace) -> int:
    res = run(duration=args.duration, rate=args.rate, identities=args.identities)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"ledger convergence: {res['reports_in_window']} reports over {res['window_s']} s, 3 anchors + 2 seekers, "
          f"{res['worker_identities']} identities at heartbeat {res['heartbeat_s']} s")
    print(f"  convergence to all 5 replicas: p50 {res['convergence_p50_s']} s  p99 {res['convergence_p99_s']} s "
          f"(goal <= 2.0)  max {res['convergence_max_s']} s  not converged {res['not_converged']}")
    print(f"  after a {res['partition_s']:.0f} s partition: healed in {res['heal_convergence_s']} s (goal <= 5.0), "
          f"{res['reports_divergent_at_heal']} of {res['reports_across_heal']} reports were missing somewhere at the heal")
    print(f"  gossip: {res['msgs_per_s']} msgs/s published, {res['msgs_delivered_per_s']} delivered")
    print("  cpu %: " + ", ".join(f"{n} {v}" for n, v in res["cpu_pct_per_process"].items()))
    return 0
