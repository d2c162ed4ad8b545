"""A reduced sweep over real processes: a 30-peer plan, two modes, a handful of requests — anchors, two host
processes serving the virtual peers on real shards of a tiny 36-layer model, and the sweep's seeker."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gtracd.lab.logs import REQUEST_COLUMNS, TRACE_COLUMNS, TRUST_COLUMNS, read_csv

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(180)]


def test_reduced_sweep_logs_parse_and_every_success_matches_the_monolithic_tokens(tmp_path):
    plan = tmp_path / "plan30.csv"
    gen = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "plan", "--peers", "30", "--layers", "36",
                          "--shard-sizes", "9,18", "--seed", "1", "--mix",
                          "golden=0.25,honey_pot=0.35,turtle=0.15,normal=0.25", "-o", str(plan)],
                         capture_output=True, text=True, timeout=60)
    assert gen.returncode == 0, gen.stderr
    out = tmp_path / "sweep"
    p = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--plan", str(plan), "--modes",
                        "g-trac,sp", "--requests", "6", "--tokens", "12", "--time-scale", "0.02", "--out", str(out),
                        "--json"], capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr[-3000:]
    summary = json.loads(p.stdout.strip().splitlines()[-1])
    assert summary == json.loads((out / "summary.json").read_text())
    assert set(summary["modes"]) == {"g-trac", "sp"} and summary["peers"] == 30
    for mode, cells in summary["modes"].items():
        c = cells["12"]
        assert c["requests"] == 6 and 0.0 <= c["wilson_lo"] <= c["ssr"] <= c["wilson_hi"] <= 1.0
        assert c["tokens_match"] == c["successes"], (mode, c)  # no byzantine peer: every success is exact
    assert summary["modes"]["g-trac"]["12"]["successes"] >= 5  # golden replicas on every span

    reqs = list(out.glob("requests_*.csv"))
    assert len(reqs) == 1
    rows = read_csv(reqs[0])
    assert tuple(rows[0].keys()) == REQUEST_COLUMNS and len(rows) == 12
    assert {r["mode"] for r in rows} == {"g-trac", "sp"}
    for r in rows:
        assert r["request_success"] in ("0", "1") and float(r["request_e2e_ms"]) > 0
        assert len(r["chain_ids"].split("->")) == len(r["chain_layers"].split("->")) >= 1
    trust = read_csv(next(out.glob("trust_*.csv")))
    assert tuple(trust[0].keys()) == TRUST_COLUMNS and len(trust) == 12 * 30  # every peer, every request
    traces = list(out.glob("distributed_trace_*_tiny-llama-36_*.csv"))
    assert traces and tuple(read_csv(traces[0])[0].keys()) == TRACE_COLUMNS
    for fig in ("fig3_ssr", "fig4_latency", "fig5_chains", "fig6_landscape", "fig7_selection"):
        assert (out / f"{fig}.png").stat().st_size > 1000
    assert "stopped its network: 2 anchors and 2 host processes (exit codes [0, 0, 0, 0])" in p.stderr  # the lab stopped cleanly


def test_a_lab_that_cannot_start_stops_everything_it_started(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text("peer_id,template,host_id,host_type,ip,port,layer_start,layer_end,cpu_load,fail_rate,trust0,"
                    "net_delay_ms\np1,guaranteed_safe,P1,P,127.0.0.1,7000,0,5,1,0,1,10\n")
    p = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "up", "--plan", str(plan), "--model",
                        str(tmp_path / "no-such-model"), "--dir", str(tmp_path / "lab")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "could not start" in p.stderr and "no-such-model" in p.stderr and "Traceback" not in p.stderr
    assert "\n" not in p.stderr.strip().splitlines()[-1]
    # nothing left running: no anchor or host of this lab survives
    ps = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert ps.stdout.strip() == ""


def test_bad_plan_refused_before_anything_starts(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text("peer_id,template,host_id,host_type,ip,port,layer_start,layer_end,cpu_load,fail_rate,trust0,"
                    "net_delay_ms\np1,guaranteed_safe,P1,P,127.0.0.1,7000,0,5,1,0,1,10\n"
                    "p2,risky_fast,P1,P,127.0.0.1,7000,0,5,1,2.5,0.5,1\n")
    p = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--plan", str(plan), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert p.stderr.strip() == ("gtracd: error: plan.csv row 3, column fail_rate: 2.5 is outside [0, 1]")
    assert not (tmp_path / "o").exists()


def test_resume_continues_a_killed_sweep_keeping_its_finished_cells(tmp_path):
    """Lab II, item 6: a sweep killed (-9) in its second cell; `--resume` keeps the first cell, re-runs the
    second from its first request, and the logs hold each request once."""
    import signal
    import threading

    from gtracd.lab.logs import read_csv
    from tests.test_orphans import PLAN, alive, descendants
    from tests.waiting import wait_until

    (tmp_path / "plan.csv").write_text(PLAN)
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--plan", "plan.csv", "--modes",
                          "g-trac,mr", "--requests", "40", "--tokens", "6", "--time-scale", "0.02", "--out", "out",
                          "--no-figures"], cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    err: list[str] = []
    threading.Thread(target=lambda: err.extend(p.stderr), daemon=True).start()
    first = out / "cells" / "g-trac_6.json"
    wait_until(lambda: first.exists() or p.poll() is not None, 240, "the first cell to finish")
    kids = descendants(p.pid)
    assert len(kids) >= 4  # 2 anchors, 2 host processes
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    wait_until(lambda: not any(alive(k) for k in kids), 60, "the killed sweep's network to stop by itself")
    assert not (out / "cells" / "mr_6.json").exists(), "".join(err)[-2000:]  # killed inside the second cell
    kept = first.read_bytes()
    r = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--resume", "out", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "1 of 2 cells complete and kept; 1 to run from their first request (mr 6)" in r.stderr
    assert first.read_bytes() == kept
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert {m: c["6"]["requests"] for m, c in summary["modes"].items()} == {"g-trac": 40, "mr": 40}
    rows = read_csv(next(out.glob("requests_*.csv")))
    assert len(rows) == 80 and len({x["request_id"] for x in rows}) == 80
    assert sum(x["mode"] == "mr" for x in rows) == 40
    trust = read_csv(next(out.glob("trust_*.csv")))
    assert {t["request_id"] for t in trust} == {x["request_id"] for x in rows}  # no row of the cut cell is left
    again = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--resume", "out", "--plan", "x"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "drop --plan and --out" in again.stderr


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_churn_kills_and_restarts_host_processes_while_requests_run(tmp_path):
    """Lab II, item 4: --churn kills (-9) and restarts host processes mid-sweep; with healing waits every
    success is still the model's own output, and the sweep says what churned."""
    from tests.test_orphans import PLAN

    (tmp_path / "plan.csv").write_text(PLAN.replace("w3,S_risky_fast,S1,S,100.64.0.3,6010,2,3,1,0.2,0.5,1",
                                                    "w3,S_normal,S1,S,100.64.0.3,6010,2,3,1,0,0.97,1"))
    r = subprocess.run([sys.executable, "-m", "gtracd.cli", "lab", "sweep", "--plan", "plan.csv", "--modes", "g-trac",
                        "--requests", "60", "--tokens", "12", "--time-scale", "0.02", "--processes", "3",
                        "--churn", "12", "--heal-wait-s", "5", "--out", "out", "--no-figures", "--json"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=380)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    events = summary["churn"]["events"]
    assert summary["churn"]["rate_per_min"] == 12 and events and all(e["peers"] >= 1 for e in events)
    assert "killed -9 and restarted" in r.stderr
    c = summary["modes"]["g-trac"]["12"]
    assert c["tokens_match"] == c["successes"] >= 1
    assert summary["defences"]["heal_wait_s"] == 5
