"""`gtracd lab plan|up|host|sweep|figures`."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from ..config import FIELDS, add_setting_flags, flags_from, load_settings
from ..errors import UserError
from .host import main as host_main
from .logs import markdown_table
from .network import run_up
from .plan import format_plan, generate_plan, parse_mix, plan_paths
from .profiles import load_catalog
from .sweep import NO_MATPLOTLIB, SweepConfig, draw_figures, resume_config, run

HOST_SETTINGS = ["network", "listen", "bootstrap", "data_dir", "heartbeat_s"]


def register(sub) -> None:
    lab = sub.add_parser("lab", help="emulated edge network of many virtual peers, and the paper's experiments")
    lsub = lab.add_subparsers(dest="lab_cmd", required=True)

    p = lsub.add_parser("plan", help="write a deployment plan (CSV, the reference's columns) from profiles/")
    p.add_argument("--peers", type=int, required=True)
    p.add_argument("--layers", type=int, default=36)
    p.add_argument("--shard-sizes", default="3,6,9", help="layers per shard, comma-separated (each divides --layers)")
    p.add_argument("--mix", default="golden=0.12,honey_pot=0.35,turtle=0.2,normal=0.33",
                   help="profile weights, e.g. golden=0.1,honey_pot=0.35,turtle=0.2,normal=0.35")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profiles", help="profiles folder (default: the source tree's profiles/ or GTRACD_PROFILES)")
    p.add_argument("-o", "--output", help="write here (default stdout)")

    u = lsub.add_parser("up", help="bring a plan's network up on loopback (anchors + host processes); Ctrl-C stops")
    _lab_args(u)
    u.add_argument("--dir", help="state directory (default: a new temporary one)")

    h = lsub.add_parser("host", help="(internal) one process serving a group of a plan's virtual peers")
    h.add_argument("--plan", required=True)
    h.add_argument("--group", type=int, required=True)
    h.add_argument("--groups", type=int, required=True)
    h.add_argument("--secret", required=True)
    h.add_argument("--seed", type=int, default=0)
    h.add_argument("--time-scale", type=float, default=1.0)
    h.add_argument("--stall-s", type=float, default=30.0)
    h.add_argument("--model", required=True)
    h.add_argument("--profiles")
    h.add_argument("--ready-file")
    h.add_argument("--log-level", default="WARNING")
    h.add_argument("--config")
    add_setting_flags(h, HOST_SETTINGS)

    s = lsub.add_parser("sweep", help="modes x target lengths x N requests through a real seeker; logs, figures")
    _lab_args(s, plan_required=False)
    s.add_argument("--modes", default="naive,g-trac,sp,mr,larac")
    s.add_argument("--requests", type=int, default=100)
    s.add_argument("--tokens", default="10,50,100", help="target lengths, comma-separated")
    s.add_argument("--out", help="output folder (logs, summary.json, figures)")
    s.add_argument("--spot-check-rate", type=float, default=None,
                   help="the seeker's share of hops re-executed on a replica (default: a seeker's default, "
                        f"{FIELDS['spot_check_rate'].default}; 0 turns spot checks off)")
    s.add_argument("--spot-check-probation", type=int, default=None,
                   help="turns a new peer is checked on every call (default: a seeker's default, "
                        f"{FIELDS['spot_check_probation'].default}; 0: only the random rate)")
    s.add_argument("--heal-wait-s", type=float, default=None,
                   help="how long a repair may wait for a live replacement (default: a seeker's default, "
                        f"{FIELDS['heal_wait_s'].default})")
    s.add_argument("--max-repairs", type=int, default=1,
                   help="repairs per request (default 1: the paper's one-shot repair; 0: a seeker's default, one "
                        "per failing call)")
    s.add_argument("--churn", type=float, default=0.0, metavar="RATE",
                   help="kill (-9) and restart a random host process every 60/RATE seconds while requests run")
    s.add_argument("--resume", metavar="DIR",
                   help="continue the interrupted sweep in DIR with its own settings (finished cells are kept)")
    s.add_argument("--concurrency", type=int, default=1, help="requests in flight at once (paper: 1)")
    s.add_argument("--no-figures", action="store_true")
    s.add_argument("--json", action="store_true", help="print summary.json as the last line of stdout")

    f = lsub.add_parser("figures", help="(re)draw the figures and summary.md of a sweep's output folder")
    f.add_argument("out")
    lab.set_defaults(func=main)


def _lab_args(p, plan_required: bool = True) -> None:
    p.add_argument("--plan", required=plan_required, action="append",
                   help="deployment plan CSV (the reference's columns); repeat it or give a comma list to run several "
                        "plans as one network")
    p.add_argument("--model", help="default: smollm2-135m for 30-layer plans, else tiny-llama-L")
    p.add_argument("--time-scale", type=float, default=1.0, help="scales every injected delay and derived deadline")
    p.add_argument("--processes", type=int, default=2,
                   help="host processes the virtual peers are spread over (at most one per plan ip:port; witnesses "
                        "and arbiters need other hosts, so checks that convict want 3 or more)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profiles", help="profiles folder")


def _sweep_config(args: argparse.Namespace) -> SweepConfig:
    if args.concurrency < 1:
        raise UserError("--concurrency must be >= 1")
    if args.max_repairs < 0:
        raise UserError("--max-repairs must be >= 0 (0: a seeker's default)")
    seeker = {}
    if args.spot_check_rate is not None:
        if not 0.0 <= args.spot_check_rate <= 1.0:
            raise UserError(f"--spot-check-rate must lie in [0, 1], got {args.spot_check_rate}")
        seeker["spot_check_rate"] = args.spot_check_rate
    if args.spot_check_probation is not None:
        if args.spot_check_probation < 0:
            raise UserError(f"--spot-check-probation must be >= 0, got {args.spot_check_probation}")
        seeker["spot_check_probation"] = args.spot_check_probation
    if args.heal_wait_s is not None:
        if not (0.0 <= args.heal_wait_s < math.inf):
            raise UserError(f"--heal-wait-s must be >= 0, got {args.heal_wait_s}")
        seeker["heal_wait_s"] = args.heal_wait_s
    if not (0.0 <= args.churn < math.inf):
        raise UserError(f"--churn must be a rate >= 0 per minute, got {args.churn}")
    return SweepConfig(plan_paths(args.plan), [m.strip() for m in args.modes.split(",") if m.strip()],
                       _ints(args.tokens, "--tokens"), args.requests, args.seed, Path(args.out), args.time_scale,
                       args.concurrency, args.processes, args.model, args.profiles, figures=not args.no_figures,
                       max_repairs=args.max_repairs or None, seeker=seeker, churn=args.churn)


def _ints(text: str, what: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(f"{what} wants comma-separated integers, got {text!r}") from None
    if not out or len(set(out)) != len(out):
        raise UserError(f"{what} wants distinct comma-separated integers, got {text!r}")
    return out


def main(args: argparse.Namespace) -> int:
    cmd = args.lab_cmd
    ts = getattr(args, "time_scale", 1.0)
    if not (math.isfinite(ts) and ts > 0):
        raise UserError(f"--time-scale must be a finite number > 0, got {ts}")
    if getattr(args, "processes", 1) < 1:
        raise UserError("--processes must be >= 1")
    if cmd == "plan":
        cat = load_catalog(args.profiles)
        plan = generate_plan(cat, args.peers, args.layers, _ints(args.shard_sizes, "--shard-sizes"),
                             parse_mix(args.mix, cat), args.seed)
        text = format_plan(plan)
        if args.output:
            try:
                Path(args.output).write_text(text)
            except OSError as e:
                raise UserError(f"cannot write {args.output}: {e.strerror}") from None
            print(f"gtracd lab plan: {len(plan.rows)} peers over {plan.layers} layers -> {args.output} "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(plan.templates().items()))})", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    if cmd == "up":
        return run_up(args)
    if cmd == "host":
        return host_main(args, load_settings(args.config, flags_from(args, HOST_SETTINGS)))
    if cmd == "sweep":
        say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
        if args.resume:
            if args.plan or args.out:
                raise UserError("--resume DIR continues that sweep with its own plan and output folder: drop "
                                "--plan and --out")
            cfg = resume_config(Path(args.resume))
            cfg.figures = cfg.figures and not args.no_figures
            summary = run(cfg, say, resume=True)
        else:
            if not args.plan or not args.out:
                raise UserError("lab sweep needs --plan and --out (or --resume DIR)")
            cfg = _sweep_config(args)
            summary = run(cfg, say)
        _print_table(summary)
        if args.json:
            print(json.dumps(summary))
        return 0
    if cmd == "figures":
        out = Path(args.out)
        try:
            summary = json.loads((out / "summary.json").read_text())
        except (OSError, ValueError) as e:
            raise UserError(f"{out}: no readable summary.json ({e})") from None
        if not isinstance(summary, dict) or not isinstance(summary.get("modes"), dict) or not any(
                isinstance(c, dict) and c for c in summary["modes"].values()):
            raise UserError(f"{out}/summary.json holds no (mode, length) results to draw")
        made = draw_figures(out, summary)
        if made is None:
            raise UserError(f"no figures without matplotlib ({NO_MATPLOTLIB})")
        (out / "summary.md").write_text(markdown_table(summary))
        print("\n".join(str(p) for p in [*made, out / "summary.md"]))
        return 0
    raise UserError(f"unknown lab command {cmd}")


def _print_table(summary: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"lab sweep: {summary['peers']} peers, time scale {summary['time_scale']:g}")
    for c in ("mode", "tokens", "SSR", "95% Wilson", "tok p50 ms", "tok p99 ms", "chain", "repairs", "match"):
        t.add_column(c, justify="right")
    def f(v):
        return "-" if v is None else f"{v:.1f}"

    for m, cells in summary["modes"].items():
        for L, c in cells.items():
            t.add_row(m, L, f"{c['ssr']:.0%}", f"{c['wilson_lo']:.2f}-{c['wilson_hi']:.2f}",
                      f(c["token_latency_ms_p50"]), f(c["token_latency_ms_p99"]), f(c["chain_len_median"]),
                      str(c["repairs"]), f"{c['tokens_match']}/{c['successes']}")
    con = Console(stderr=True)
    if not con.is_terminal:  # logs and CI: wide enough to keep every column
        con = Console(stderr=True, width=140)
    con.print(t)
