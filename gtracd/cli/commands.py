"""The subcommands route, bench, model, demo, testbed, status and top (keys and config: cli/main.py). The
engine (torch) is imported only inside the handlers that need it, so `gtracd --help` never imports torch."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import trio

from .. import doctor
from ..benchmarks import (
    attack,
    ledger,
    membership,
    phone,
    pipeline,
    quant,
    routing,
    serve,
    soak,
    speculative,
    wan,
)
from ..catalog.fingerprint import depth
from ..config import add_setting_flags, flags_from, load_settings
from ..daemon import runtime as common
from ..engine import require_torch
from ..engine.models import fingerprint, resolve_model
from ..errors import UserError
from ..harness.testbed import run_fleet
from ..routing import NoRoute, Params, Snapshot, route
from ..routing.core import explain
from ..tui import app as top
from . import demo, status


def cmd_route(args: argparse.Namespace) -> int:
    s = load_settings(args.config)
    try:
        doc = json.loads(Path(args.snapshot).read_text()) if args.snapshot != "-" else json.load(sys.stdin)
    except OSError as e:
        raise UserError(f"cannot read snapshot {args.snapshot}: {e.strerror}") from None
    except ValueError as e:
        raise UserError(f"snapshot {args.snapshot} is not JSON: {e}") from None
    snap = Snapshot.from_json(doc)
    params = Params(trust_floor=args.trust_floor if args.trust_floor is not None else s.trust_floor,
                    penalty_ms=args.penalty_ms if args.penalty_ms is not None else s.penalty_ms,
                    min_reliability=args.min_reliability if args.min_reliability is not None else s.larac_min_reliability)

    t0 = time.perf_counter()
    try:
        r = route(snap, args.mode, params, rng=random.Random(args.seed))
    except NoRoute as e:
        if args.json:
            print(json.dumps({"mode": args.mode, "chain": None, "error": str(e), "gap": list(e.gap or ())}))
        else:
            print(f"gtracd: no chain: {e}", file=sys.stderr)
        if args.explain:
            for pid, why in explain(snap, args.mode, params).items():
                print(f"  excluded {pid}: {why}", file=sys.stderr)
        return 1
    ms = (time.perf_counter() - t0) * 1e3
    if args.json:
        out = r.to_json(ms)
        if args.explain:
            out["excluded"] = explain(snap, args.mode, params)
        print(json.dumps(out))
        return 0
    print(f"mode {r.mode}: {' -> '.join(f'{p.id}[{p.start}:{p.end}]' for p in r.chain)}")
    print(f"latency {r.latency_ms:.1f} ms  reliability {r.reliability:.4f}  cost {r.cost:.1f} ms  "
          f"selection {ms:.3f} ms" + ("" if r.feasible else "  (no chain meets R_min: most reliable chain)"))
    if args.explain:
        for pid, why in explain(snap, args.mode, params).items():
            print(f"  excluded {pid}: {why}")
    return 0


BENCHES = {"routing": routing.main, "pipeline": pipeline.main, "attack": attack.main, "ledger": ledger.main,
           "soak": soak.main, "serve": serve.main, "phone": phone.main, "membership": membership.main,
           "speculative": speculative.main, "quant": quant.main, "wan": wan.main}
NEEDS_TORCH = {"serve", "speculative", "quant", "wan"}


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench not in BENCHES:
        raise UserError(f"unknown benchmark {args.bench!r}")
    if args.bench in NEEDS_TORCH:
        require_torch()
    return BENCHES[args.bench](args)


def cmd_model(args: argparse.Namespace) -> int:
    require_torch()
    folder = resolve_model(args.name, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"{args.name}\t{folder}\tlayers={depth(folder)}\tfingerprint={fingerprint(folder)}\t"
          f"int8={fingerprint(folder, 'int8')}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    require_torch()

    return demo.main(args)


def cmd_testbed(args: argparse.Namespace) -> int:
    s = load_settings(args.config, flags_from(args, TESTBED_SETTINGS))
    common.setup_logging(args.log_level)
    try:
        trio.run(run_fleet, args, s)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    s = load_settings(args.config, {"data_dir": args.data_dir} if args.data_dir else None)
    return status.main(args, s)


def cmd_top(args: argparse.Namespace) -> int:
    s = load_settings(args.config, {"data_dir": args.data_dir} if args.data_dir else None)
    return top.main(args, s)


DOCTOR_SETTINGS = ["network", "listen", "bootstrap", "key", "keystore", "data_dir", "metrics", "model"]


def cmd_doctor(args: argparse.Namespace) -> int:
    s = load_settings(args.config, flags_from(args, DOCTOR_SETTINGS))
    return doctor.report(doctor.diagnose(s, args.role, network=not args.offline), args.json)


TESTBED_SETTINGS = ["network", "listen", "bootstrap", "data_dir", "heartbeat_s"]


def register(sub) -> None:
    """Every subcommand of this module (keys and config: cli/main.py)."""
    for add in (_register_status, _register_doctor, _register_top, _register_testbed, _register_model, _register_demo,
                _register_route, _register_bench):
        add(sub)


def _register_status(sub) -> None:
    st = sub.add_parser("status", help="what running daemons see: peers, liveness, trust, anchors, drops")
    st.add_argument("name", nargs="?", help="only this daemon (e.g. anchor-a1, or just a1)")
    st.add_argument("--data-dir", help="state directory the daemons run with (default ~/.gtracd)")
    st.add_argument("--json", action="store_true")
    st.add_argument("--watch", type=float, nargs="?", const=1.0, default=0.0, metavar="SECONDS",
                    help="live view, refreshed every SECONDS (default 1); Ctrl-C to leave")
    st.set_defaults(func=cmd_status)


def _register_doctor(sub) -> None:
    d = sub.add_parser("doctor", help="check this device's setup and say what to fix, one line each",
                       description="Checks key files and their modes, the anchor keyring, listen and metrics ports, "
                                   "free disk for the ledger, the model (worker, seeker), torch (worker), libp2p and the phone profile's stand-ins; then dials every bootstrap "
                                   "peer: keyring anchors reachable and answering, and this clock's offset from "
                                   "theirs. Settings come from the config file, GTRACD_* and the flags, as for "
                                   "the daemon. Exit 0 when no check failed.")
    d.add_argument("role", nargs="?", choices=("worker", "anchor", "seeker"),
                   help="also check what this role needs (e.g. gtracd doctor worker)")
    d.add_argument("--json", action="store_true", help="one JSON object: ok and every check")
    d.add_argument("--offline", action="store_true", help="skip the network checks")
    add_setting_flags(d, DOCTOR_SETTINGS)
    d.set_defaults(func=cmd_doctor)


def _register_top(sub) -> None:
    tp = sub.add_parser("top", help="full-screen live view: coverage map, peers, chains, requests, anchors, drops",
                        description="A live view of the network as the daemons under a data directory see it "
                                    "(any role; a seeker or anchor sees the whole network through heartbeats and "
                                    "its ledger replica). Keys: s sort, r reverse, / filter, c clear, ? help, "
                                    "q quit.")
    tp.add_argument("name", nargs="?", help="only this daemon's view (e.g. seeker-s1, or just s1)")
    tp.add_argument("--data-dir", help="state directory the daemons run with (default ~/.gtracd)")
    tp.add_argument("--interval", type=float, default=1.0, metavar="SECONDS", help="refresh period (default 1)")
    tp.set_defaults(func=cmd_top)


def _register_testbed(sub) -> None:
    tb = sub.add_parser("testbed", help="control-plane load for tests and benchmarks (no inference)")
    tsub = tb.add_subparsers(dest="testbed_cmd", required=True)
    fl = tsub.add_parser("fleet", help="one process announcing N worker identities with batched heartbeats")
    fl.add_argument("--identities", type=int, default=50)
    fl.add_argument("--stages", type=int, default=3, help="layer ranges the identities are spread over")
    fl.add_argument("--total-layers", type=int, default=30)
    fl.add_argument("--seed", default="fleet", help="identities derive from this (stable across restarts)")
    fl.add_argument("--name", default="fleet")
    fl.add_argument("--ready-file")
    fl.add_argument("--log-level", default="WARNING")
    add_setting_flags(fl, TESTBED_SETTINGS)
    tb.set_defaults(func=cmd_testbed)


def _register_model(sub) -> None:
    m = sub.add_parser("model", help="prepare models (workers)")
    msub = m.add_subparsers(dest="model_cmd", required=True)
    mp = msub.add_parser("prepare", help="convert/download once; print folder, depth and fingerprints (as prepared, "
                                          "and served with --quantize int8)")
    mp.add_argument("name", nargs="?", default="smollm2-135m", help="smollm2-135m | gemma3-270m | folder | hub id")
    m.set_defaults(func=cmd_model)


def _register_demo(sub) -> None:
    d = sub.add_parser("demo", help="run a local 3-worker network on loopback and ask it a question")
    d.add_argument("--model", default="smollm2-135m")
    d.add_argument("--question", default="What is the capital of France?")
    d.add_argument("--max-new-tokens", type=int, default=48)
    d.set_defaults(func=cmd_demo)


def _register_route(sub) -> None:
    r = sub.add_parser("route", help="choose a chain from a snapshot file (G-TRAC and baselines)")
    r.add_argument("--snapshot", required=True, help='JSON {"layers": L, "peers": [{id,start,end,trust,latency_ms,alive}]} or -')
    r.add_argument("--mode", default="g-trac", choices=("g-trac", "sp", "mr", "larac", "naive"))
    r.add_argument("--trust-floor", type=float, help="tau_min (default from settings: 0.96)")
    r.add_argument("--penalty-ms", type=float, help="T_pen (default from settings)")
    r.add_argument("--min-reliability", type=float, help="R_min for larac (default 0.8)")
    r.add_argument("--seed", type=int, default=None, help="seed for naive")
    r.add_argument("--explain", action="store_true", help="say why peers were excluded")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_route)


def _register_bench(sub) -> None:
    b = sub.add_parser("bench", help="benchmarks: routing | pipeline | speculative | quant | wan | ledger | soak | "
                                     "serve | attack | membership | phone")
    bsub = b.add_subparsers(dest="bench", required=True)
    br = bsub.add_parser("routing", help="selection time per mode, 36 .. 100k peers")
    br.add_argument("--json", action="store_true")
    br.add_argument("--sizes", help="comma-separated peer counts")
    bp = bsub.add_parser("pipeline", help="distributed vs monolithic decode, KV vs recompute, repair, RSS")
    bp.add_argument("--hops", type=int, default=3)
    bp.add_argument("--tokens", type=int, default=64)
    bp.add_argument("--model", default=None)
    bp.add_argument("--json", action="store_true")
    bq = bsub.add_parser("speculative", help="speculative decoding over 3 hops: a rewriting task and an open story, "
                                             "auto vs off, and monolithic transformers")
    bq.add_argument("--tokens", type=int, default=128, help="at most this many per generation (each ends at its end "
                                                            "of turn)")
    bq.add_argument("--repeats", type=int, default=3, help="runs per task and setting (medians)")
    bq.add_argument("--model", default=None)
    bq.add_argument("--json", action="store_true")
    bz = bsub.add_parser("quant", help="float32 vs --quantize int8: bytes per layer, worker RSS, decode tok/s over 3 "
                                       "hops, greedy agreement and perplexity")
    bz.add_argument("--tokens", type=int, default=64)
    bz.add_argument("--model", default=None)
    bz.add_argument("--json", action="store_true")
    bw = bsub.add_parser("wan", help="3 hops over loopback, direct namespace links and a relay at 10 Mbit/s; wire "
                                     "dtypes, DCUtR, a relay killed mid-generation, mDNS, an invite (root)")
    bw.add_argument("--tokens", type=int, default=32)
    bw.add_argument("--model", default=None)
    bw.add_argument("--json", action="store_true")
    bl = bsub.add_parser("ledger", help="report convergence across anchors and seekers, heal, msgs/s, CPU")
    bl.add_argument("--duration", type=float, default=30.0, help="steady-state window in seconds")
    bl.add_argument("--rate", type=float, default=2.0, help="trust reports/s per seeker")
    bl.add_argument("--identities", type=int, default=50)
    bl.add_argument("--json", action="store_true")
    bs = bsub.add_parser("soak", help="a busy network for minutes: anchor memory, disk and anti-entropy stay flat "
                                      "across checkpoints, no report lost, an anchor killed and restarted; "
                                      "--history N: load and fresh-replica sync of a month of history")
    bs.add_argument("--duration", type=float, default=600.0, help="seconds of load (0: only --history)")
    bs.add_argument("--rate", type=float, default=50.0, help="trust reports/s in total")
    bs.add_argument("--seekers", type=int, default=2, help="seekers sharing the rate")
    bs.add_argument("--sample-s", type=float, default=60.0, help="seconds between samples")
    bs.add_argument("--history", metavar="N", help="also: N synthetic signed reports (e.g. 10M) as a month of "
                                                   "history; anchor restart and fresh replica sync times")
    bs.add_argument("--record", help="also write the JSON result here (e.g. bench/soak.json)")
    bs.add_argument("--json", action="store_true")
    bv = bsub.add_parser("serve", help="the HTTP API under load (3 SmolLM2 workers, the openai client): tok/s, TTFT "
                                       "and inter-token latency per concurrency; context reuse's TTFT speed-up")
    bv.add_argument("--concurrency", default="1,4,8", help="comma-separated concurrent requests (default 1,4,8)")
    bv.add_argument("--tokens", type=int, default=64, help="tokens per request (EOS ignored)")
    bv.add_argument("--rounds", type=int, default=3, help="rounds of every level and of the reuse measurement (medians)")
    bv.add_argument("--record", help="also write the JSON result here (e.g. bench/serve.json)")
    bv.add_argument("--json", action="store_true")
    ba = bsub.add_parser("attack", help="every attack of the trust layer against live loopback daemons")
    ba.add_argument("--only", default="", help="comma-separated scenarios: spoof,hijack,flood,fuzz,byzantine,"
                                                "accusations,cost,sybil,tolerance (default all)")
    ba.add_argument("--scale", type=float, default=1.0, help="fuzz cases and checked hops x this (1 = the goals)")
    ba.add_argument("--json", action="store_true")
    bm = bsub.add_parser("membership", help="self-placing workers: initial coverage, healing a killed span, "
                                            "no oscillation, a generation running throughout")
    bm.add_argument("--seed", type=int, default=1, help="the workers' random start moments")
    bm.add_argument("--record", help="also write the JSON result here (e.g. bench/membership.json)")
    bm.add_argument("--json", action="store_true")
    bf = bsub.add_parser("phone", help="seeker and anchor memory (RSS) in this install, e.g. the phone profile "
                                       "(make test-phone's venv): goal <= 120 MiB")
    bf.add_argument("--duration", type=float, default=60.0, help="seconds of light traffic to sample over")
    bf.add_argument("--identities", type=int, default=30, help="heartbeating worker identities (a testbed fleet)")
    bf.add_argument("--rate", type=float, default=2.0, help="trust reports/s from a second seeker")
    bf.add_argument("--record", help="also write the JSON result here (e.g. bench/phone.json)")
    bf.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_bench)
