"""`gtracd lab sweep`: the paper's experiment end to end on the lab network, through a real seeker.

For every mode and target length: a fresh ledger epoch (anchor-signed, carrying the plan's trust0 priors;
latency back to the initial estimate) — the paper resets trust between algorithms — then N requests, each
routed by the mode from the seeker's live view and ledger replica, generated over the real data plane with
the paper's bounded one-shot repair, and reported to the anchors as signed trust reports, exactly as a
seeker daemon does. Outputs: the reference's three logs, selected peers, summary.json, figures.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..config import load_settings
from ..control.peerview import PeerView
from ..engine import require_torch, set_threads
from ..engine.models import resolve_model
from ..errors import GtracError, UserError
from ..identity import Identity, Keystore
from ..seeker.generation import OPEN_ROUTES, GenerationFailed
from ..seeker.running import running_seeker
from ..seeker.service import seeker_generation
from ..wire.envelope import decode_envelope
from .logs import (
    CHAIN_SEP,
    REQUEST_COLUMNS,
    SELECTED_COLUMNS,
    TRACE_COLUMNS,
    TRUST_COLUMNS,
    CsvLog,
    markdown_table,
    summarize,
)
from .network import Lab, LabSettings, lab_plan, model_for, submit_priors
from .plan import load_plans
from .profiles import load_catalog
from .resume import load_cells, prune_logs, save_cell, save_state
from .resume import load_state as resume_state
from .stats import median

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.control.follower import Follower
    from gtracd.daemon.node import Node

log = logging.getLogger("gtracd.lab")


@dataclass
class SweepConfig:
    plans: list[Path]
    modes: list[str]
    lengths: list[int]
    requests: int
    seed: int
    out: Path
    time_scale: float = 1.0
    concurrency: int = 1
    processes: int = 2
    model: str | None = None
    profiles: str | None = None
    prompt_len: int = 16
    prompts: int = 8
    figures: bool = True
    max_repairs: int | None = 1  # the paper's bounded one-shot repair; None: a seeker's default (one per call)
    seeker: dict = field(default_factory=dict)  # seeker settings besides the lab's (spot_check_rate, heal_wait_s)
    churn: float = 0.0  # host processes killed (-9) and restarted per minute while requests run

    def to_json(self) -> dict:
        d = asdict(self)
        d["plans"] = [str(p) for p in self.plans]
        d["out"] = str(self.out)
        return d

    @classmethod
    def from_json(cls, d: dict, out: Path) -> SweepConfig:
        known = {f.name for f in fields(cls)}
        cfg = cls(**{k: v for k, v in d.items() if k in known})
        cfg.plans = [Path(p) for p in cfg.plans]
        cfg.out = out
        return cfg


def rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def make_prompts(seed: int, n: int, length: int) -> list[list[int]]:
    """Deterministic prompts as token ids (valid in every model the lab runs: ids 3..99)."""
    rng = random.Random(f"prompts/{seed}")
    return [[1] + [rng.randrange(3, 100) for _ in range(length - 1)] for _ in range(n)]


def reference_tokens(model: str, prompts: list[list[int]], steps: int) -> list[list[int]]:
    """The same model's monolithic greedy output for every prompt (what each success is checked against)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    require_torch()
    from ..engine.reference import greedy, load

    set_threads(1)
    m = load(resolve_model(model, log=lambda x: print(x, file=sys.stderr)))
    return [greedy(m, p, steps).tokens for p in prompts]


MODES = ("g-trac", "sp", "mr", "larac", "naive")


def run(cfg: SweepConfig, status=lambda m: None, resume: bool = False) -> dict:
    """Run the sweep (or, `resume`, continue the one in cfg.out: its finished cells are kept)."""
    logging.getLogger("gtracd.seeker").setLevel(logging.ERROR)  # repairs are expected here; the logs count them

    if not cfg.modes:
        raise UserError(f"--modes is empty (choose from {', '.join(MODES)})")
    for m in cfg.modes:
        if m not in MODES:
            raise UserError(f"--modes: unknown mode {m!r} ({', '.join(MODES)})")
    if cfg.requests < 1 or not cfg.lengths or min(cfg.lengths) < 1:
        raise UserError("need --requests >= 1 and --tokens lengths >= 1")
    if not (cfg.churn >= 0 and cfg.churn < float("inf")):
        raise UserError(f"--churn must be a rate >= 0 per minute, got {cfg.churn}")
    catalog = load_catalog(cfg.profiles)
    load_plans(cfg.plans, catalog)  # refused before anything starts
    try:
        cfg.out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create --out {cfg.out}: {e.strerror}") from None
    if resume:
        run_id = resume_state(cfg.out)["run_id"]
        done = load_cells(cfg.out, cfg.modes, cfg.lengths)
        dropped = prune_logs(cfg.out, run_id, set(done))
        todo = [f"{m} {n}" for m in cfg.modes for n in cfg.lengths if (m, n) not in done]
        status(f"gtracd lab sweep: resuming {cfg.out}: {len(done)} of {len(cfg.modes) * len(cfg.lengths)} cells "
               f"complete and kept; {len(todo)} to run from their first request ({', '.join(todo) or 'none'}); "
               f"{dropped} log rows of unfinished cells dropped")
    else:
        run_id = f"{'+'.join(p.stem for p in cfg.plans)}-{int(time.time())}"
        done = {}
        save_state(cfg.out, cfg.to_json(), run_id)
    # the lab's state (anchor keys, ledgers, status files) lives apart from the results and goes with the lab
    root = Path(tempfile.mkdtemp(prefix="gtracd-lab-"))
    path, plan = lab_plan(cfg.plans, catalog, root)
    model = model_for(plan, cfg.model)
    prompts = make_prompts(cfg.seed, cfg.prompts, cfg.prompt_len)
    lab = Lab(path, plan, model, LabSettings(cfg.time_scale), cfg.processes, root, cfg.seed, cfg.profiles)
    t0 = time.time()
    summary = None
    try:
        if len(done) < len(cfg.modes) * len(cfg.lengths):
            status(f"gtracd lab sweep: monolithic reference tokens of {model} for {len(prompts)} prompts ...")
            refs = reference_tokens(model, prompts, max(cfg.lengths))
            lab.start(status)
            status(f"gtracd lab sweep: lab up in {time.time() - t0:.1f} s")
        else:
            refs = []
        summary = trio.run(_sweep, lab, cfg, prompts, refs, status, run_id, done)
    finally:
        n_hosts = len(lab.hosts)
        rcs = lab.stop()
        if rcs:
            status(f"gtracd lab sweep: stopped its network: 2 anchors and {n_hosts} host processes (exit codes {rcs})")
        shutil.rmtree(lab.root, ignore_errors=True)
        if summary is None:
            status(f"gtracd lab sweep: interrupted; `gtracd lab sweep --resume {cfg.out}` continues it")
    summary["wall_s"] = round(time.time() - t0 + sum(c.get("wall_s", 0.0) for c in done.values()), 1)
    (cfg.out / "summary.json").write_text(json.dumps(summary, indent=1))
    (cfg.out / "summary.md").write_text(markdown_table(summary))
    if cfg.figures:
        made = draw_figures(cfg.out, summary)
        status(f"gtracd lab sweep: figures {', '.join(p.name for p in made)}" if made is not None
               else f"gtracd lab sweep: no figures ({NO_MATPLOTLIB})")
    return summary


NO_MATPLOTLIB = "pip install 'gtracd[lab]' for matplotlib"


def draw_figures(out: Path, summary: dict) -> list[Path] | None:
    """The paper's figures of a sweep in `out` (lab/figures.py); None without matplotlib (the lab extra),
    which is imported only here, only to draw."""
    try:
        from .figures import draw_all
    except ModuleNotFoundError as e:
        if e.name != "matplotlib":
            raise
        return None
    return draw_all(out, summary)


def resume_config(out: Path) -> SweepConfig:
    """The configuration of the sweep in `out` (`--resume`)."""
    return SweepConfig.from_json(resume_state(out)["config"], out)


class _Progress:
    """One live line on the terminal: mode, length, request i/N, running SSR."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        console = Console(stderr=True)
        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TextColumn("SSR {task.fields[ssr]}"), TimeElapsedColumn(),
                          console=console, transient=False, disable=not console.is_terminal)
        self.plain = not console.is_terminal  # logs and CI: one line per finished cell instead of a live bar
        self.t0: dict = {}

    def __enter__(self):
        self.p.__enter__()
        return self

    def __exit__(self, *a):
        self.p.__exit__(*a)

    def cell(self, mode: str, length: int, n: int):
        task = self.p.add_task(f"{mode:>6} {length:>4} tokens", total=n, ssr="-")
        self.t0[task] = (f"{mode} {length} tokens", n, time.time())
        return task

    def advance(self, task, ok: int, done: int) -> None:
        self.p.update(task, advance=1, ssr=f"{ok / done:.0%}")
        name, n, t0 = self.t0[task]
        if self.plain and done == n:
            print(f"gtracd lab sweep: {name}: {done}/{n} requests, SSR {ok / done:.0%}, {time.time() - t0:.0f} s",
                  file=sys.stderr, flush=True)


def lab_seeker_settings(lab: Lab, cfg: SweepConfig) -> Settings:
    """The sweep's seeker: a user's seeker with its defaults (spot checks, trust floor, deadlines), on the lab's
    network and ledger settings, with what the sweep was told to change (`cfg.seeker`)."""
    ls = lab.settings
    return load_settings(None, {"network": lab.network, "bootstrap": list(lab.cn.anchor_addrs.values()),
                                "data_dir": str(lab.root), "keystore": str(lab.keystore), **ls.ledger_flags(),
                                "penalty_ms": ls.penalty_ms, "hop_timeout_floor_s": ls.hop_timeout_floor_s,
                                "speculate": "off",  # the paper's experiments: one trip through the chain per token
                                **cfg.seeker}, env={})


def defences(s: Settings, cfg: SweepConfig, hosts: int) -> dict:
    """What protected the sweep's requests (summary.json): the seeker's checks and the ledger's rules."""
    return {"spot_check_rate": s.spot_check_rate, "spot_check_calls": s.spot_check_calls,
            "spot_check_probation": s.spot_check_probation if s.spot_check_rate > 0 else 0,
            "trust_floor": s.trust_floor, "max_repairs": cfg.max_repairs, "heal_wait_s": s.heal_wait_s,
            "open_routes": OPEN_ROUTES, "witness_hosts": hosts,
            "reporter_budget": s.reporter_budget,
            "notes": "witnesses and arbiters are drawn per host (the lab's host processes); the per-reporter "
                     "budget is lifted (one seeker stands for the paper's whole client population)"}


async def _sweep(lab: Lab, cfg: SweepConfig, prompts, refs, status, run_id: str, done: dict) -> dict:
    ls = lab.settings
    cells = [(m, n) for m in cfg.modes for n in cfg.lengths]
    summary = {"plan": [str(p) for p in cfg.plans], "peers": len(lab.plan.rows), "layers": lab.plan.layers,
               "model": lab.model, "time_scale": cfg.time_scale, "requests": cfg.requests,
               "concurrency": cfg.concurrency, "run_id": run_id, "modes": {}}
    if lab.plan.addresses():
        summary["addresses"] = "the plan's non-loopback addresses were emulated on loopback"
    if all(c in done for c in cells):  # a resumed sweep with nothing left to run
        summary.update(done[cells[0]]["context"])
        for m, n in cells:
            summary["modes"].setdefault(m, {})[str(n)] = _cell_summary(done[(m, n)])
        return summary
    s = lab_seeker_settings(lab, cfg)
    name_of = {v: k for k, v in lab.peers.items()}  # identity -> plan peer id
    rows = lab.plan.by_id()
    byzantine = {lab.peers[r.peer_id] for r in lab.plan.rows if r.extra.get("byzantine_rate")}
    append = bool(done)
    logs = {"req": CsvLog(cfg.out / f"requests_{run_id}.csv", REQUEST_COLUMNS, append),
            "trust": CsvLog(cfg.out / f"trust_{run_id}.csv", TRUST_COLUMNS, append),
            "sel": CsvLog(cfg.out / f"selected_{run_id}.csv", SELECTED_COLUMNS, append)}
    context = {"settings": {"trust_floor": s.trust_floor, "latency0_ms": s.latency0_ms, "penalty_ms": s.penalty_ms,
                            "hop_timeout_floor_s": s.hop_timeout_floor_s, "hop_timeout_factor": s.hop_timeout_factor,
                            "max_repairs": cfg.max_repairs, "heartbeat_s": ls.heartbeat_s,
                            "node_timeout_s": ls.node_timeout_s},
               "defences": defences(s, cfg, len(lab.hosts)), "processes": len(lab.hosts)}
    summary.update(context)
    churn: list[dict] = []
    if cfg.churn:
        summary["churn"] = {"rate_per_min": cfg.churn, "events": churn}
    view = PeerView(s.initial_trust, s.latency0_ms, s.alpha, s.reward, s.penalty, s.unknown_penalty)
    async with running_seeker("lab-seeker", Identity.generate(), s, view=view, follow=True) as sk:
        node, cache, net = sk.node, sk.cache, sk.net
        want = set(lab.peers.values())
        with trio.fail_after(max(60.0, 4 * ls.heartbeat_s)):
            while not want <= {p for p, w in view.workers.items() if w.alive}:
                await trio.sleep(0.1)
        status(f"gtracd lab sweep: the seeker hears all {len(want)} virtual peers by heartbeat")
        operator = Keystore(lab.keystore).load("anchor-1")
        try:
            async with trio.open_nursery() as background:
                if cfg.churn:
                    background.start_soon(_churn, lab, cfg, churn, status)
                with _Progress() as prog:
                    for mode, length in cells:
                        if (mode, length) in done:
                            summary["modes"].setdefault(mode, {})[str(length)] = _cell_summary(done[(mode, length)])
                            continue
                        t_cell = time.time()
                        await new_epoch(node, cache, operator, lab, s.network)
                        for w in view.workers.values():  # the seeker's own estimates restart too
                            w.trust, w.latency_ms = None, None
                        view.verified.clear()  # and every peer is on probation again
                        net.forget_all()
                        records: list[dict] = []
                        fell: dict[str, int] = {}  # byzantine peer -> requests done when it fell below the floor
                        task = prog.cell(mode, length, cfg.requests)
                        sem = trio.Semaphore(cfg.concurrency)

                        async def one(i: int, mode=mode, length=length, records=records, task=task, sem=sem,
                                      fell=fell):
                            async with sem:
                                rec = await _request(i, mode, length, cfg, lab, s, net, view, cache,
                                                     prompts, refs, name_of, rows, run_id, logs)
                            records.append(rec)
                            for p in byzantine - set(fell):
                                if view.trust(p) < s.trust_floor:
                                    fell[p] = len(records)
                            prog.advance(task, sum(r["success"] for r in records), len(records))

                        async with trio.open_nursery() as n:
                            for i in range(cfg.requests):
                                n.start_soon(one, i)
                                await trio.sleep(0)
                        for lg in list(logs.values()):
                            lg.flush()
                        cell = {"records": records, "context": context, "wall_s": round(time.time() - t_cell, 1),
                                "byzantine": {name_of.get(p, p): fell.get(p) for p in sorted(byzantine)}}
                        save_cell(cfg.out, mode, length, cell)  # after its logs: a resumed sweep keeps it
                        summary["modes"].setdefault(mode, {})[str(length)] = _cell_summary(cell)
                background.cancel_scope.cancel()
        finally:
            for lg in list(logs.values()):
                lg.close()
            with trio.CancelScope(shield=True):
                await cache.drain(5.0)
            cache.close()
    return summary


def _cell_summary(cell: dict) -> dict:
    """summary.json's (mode, length) cell: the paper's figures, plus what the defences caught and cost."""
    records = cell["records"]
    out = summarize(records)
    checks = {k: sum(r.get("checks", {}).get(k, 0) for r in records)
              for k in ("hops", "probation", "calls", "mismatches", "inconclusive", "no_replica", "aborted")}
    hop_calls = sum(r.get("hop_calls", 0) for r in records)
    out["spot_checks"] = {**checks, "convictions": sum(r.get("convictions", 0) for r in records),
                          "hop_calls": hop_calls,
                          "cost": round(checks["calls"] / hop_calls, 4) if hop_calls else 0.0}
    out["unreachable_routed_around"] = sum(r.get("unreached", 0) for r in records)
    byz = cell.get("byzantine") or {}
    if byz:
        until = sorted(v for v in byz.values() if v is not None)
        out["byzantine"] = {"peers": len(byz), "fell_below_floor": len(until),
                            "requests_until_below_floor": {"median": median([float(x) for x in until]),
                                                           "max": until[-1] if until else None},
                            "per_peer": byz}
    return out


async def _churn(lab: Lab, cfg: SweepConfig, events: list[dict], status) -> None:
    """Kill (-9) and restart a random host process (seeded draw) every 60/`cfg.churn` seconds, the first after
    a random share of that period, for as long as the sweep runs: the rate holds in every window (Poisson
    arrivals at 1/min left a 5-minute run with a single kill)."""
    rng = random.Random(f"churn/{cfg.seed}")
    period = 60.0 / cfg.churn
    await trio.sleep(rng.uniform(0.0, period))
    while True:
        g = rng.randrange(len(lab.hosts))
        t0 = time.time()
        peers = await trio.to_thread.run_sync(lab.restart, g)
        events.append({"ts_unix": round(t0, 3), "host": g, "peers": peers, "restart_s": round(time.time() - t0, 2)})
        status(f"gtracd lab sweep: churn: host process {g} ({peers} virtual peers) killed -9 and restarted in "
               f"{time.time() - t0:.1f} s")
        await trio.sleep(max(0.0, period - (time.time() - t0)))


async def new_epoch(node: Node, cache: Follower, operator, lab: Lab, network: str) -> int:
    """Start a fresh ledger epoch with the plan's trust0 priors (signed by a keyring anchor's key, submitted to
    every anchor); returns once this seeker's replica derives from it."""

    await cache.pull_once()  # numbered above what the anchors hold (a fresh seeker may not have pulled yet)
    epoch = cache.replica.derived.current().epoch + 1
    await submit_priors(node, sorted(cache.anchors), operator, lab, network, epoch)
    want = {lab.peers[r.peer_id] for r in lab.plan.rows}
    with trio.fail_after(20):
        while True:
            f = cache.replica.derived.current()
            if f.epoch == epoch and want <= set(f.trust):
                break
            await cache.pull_once()
            await trio.sleep(0.05)
    cache.apply_ledger()
    return epoch


async def _request(i, mode, length, cfg: SweepConfig, lab: Lab, s: Settings, net, view: PeerView, cache: Follower,
                   prompts, refs, name_of, rows, run_id, logs) -> dict:
    prompt = prompts[i % len(prompts)]
    gen = seeker_generation(net, view, s, {"temperature": 0.0, "top_k": 0, "top_p": 1.0, "seed": 0}, mode=mode,
                            rng=random.Random(f"{cfg.seed}/{mode}/{length}/{i}"), max_repairs=cfg.max_repairs,
                            max_length=len(prompt) + length + 8, open_timeout_s=max(2.0, 10.0 * cfg.time_scale))
    t0 = time.perf_counter()
    ts = time.time()
    tokens: list[int] = []
    err = culprit = None
    try:
        with trio.fail_after(60.0 + length * 5.0):
            await gen.start()
            r = await gen.turn(prompt, length, ignore_eos=True)
            tokens = r.tokens
    except GenerationFailed as e:
        err, culprit = str(e), e.culprit
    except trio.TooSlowError:
        err = "request timed out"
    except GtracError as e:  # anything else the network threw at this request fails it, never the sweep
        err = f"{type(e).__name__}: {e}"
    e2e = (time.perf_counter() - t0) * 1e3
    ok = err is None and len(tokens) == length
    if ok:
        await gen.aclose()
    else:
        await gen.cancel()
    gen.trust_outcome(ok, culprit)
    raws = []
    try:
        raws = await cache.report(gen.report_bodies(s.network, ok, culprit, len(tokens)))
    except Exception as e:  # a report we could not form never costs the run
        log.warning("trust report not sent: %r", e)
    await _await_reports(cache, raws)
    rid = gen.sid.hex()
    chain = gen.chain if gen.hops else [p for p, _, _ in gen.selected]
    # failed_id / failed_error / failed_stage: what ended a failed request (its culprit, "unknown" if none was
    # named); for a success, the failure its repair survived
    if not ok:
        fail_id, fail_err = (culprit or "unknown"), (err or "")
        fail_stage = chain.index(culprit) if culprit in chain else ""
    elif gen.repair_log:
        fail_id, fail_err, fail_stage = gen.repair_log[0]["failed"], gen.repair_log[0]["error"], gen.repair_log[0]["hop"]
    else:
        fail_id, fail_err, fail_stage = "", "", ""
    trust_now = [view.trust(p) for p in chain]
    rss = rss_mb()  # once per request, not per logged token
    ref = refs[i % len(prompts)][:length]
    logs["req"].row({
        "run_id": run_id, "ts_unix": ts, "mode": mode, "engine": "gtracd", "model": lab.model, "request_id": rid,
        "prompt_len_tokens": len(prompt), "target_new_tokens": length,
        "generated_new_tokens": len(tokens) if ok else len(gen.trace),  # tokens produced before a failure too
        "completed": ok, "request_success": ok, "request_e2e_ms": e2e, "selection_overhead_ms": gen.selection_ms,
        "repair_used": bool(gen.repair_log), "repair_attempted": gen.repair_attempts > 0,
        "repair_succeeded": ok and bool(gen.repair_log), "failed_id": name_of.get(fail_id, fail_id),
        "failed_error": fail_err[:200], "failed_stage": fail_stage,
        "chain_ids": CHAIN_SEP.join(name_of.get(p, p) for p in chain),
        "chain_layers": CHAIN_SEP.join(f"{rows[name_of[p]].layer_start}-{rows[name_of[p]].layer_end}"
                                       for p in chain if p in name_of),
        "client_rss_mb": rss, "trust_tau": s.trust_floor,
        "trust_min_in_chain": min(trust_now) if trust_now else "",
        "trust_mean_in_chain": sum(trust_now) / len(trust_now) if trust_now else ""})
    in_chain = set(chain)
    for pid, w in view.workers.items():
        pname = name_of.get(pid)
        if pname is None:
            continue
        row = rows[pname]
        logs["trust"].row({"run_id": run_id, "ts_unix": time.time(), "mode": mode, "request_id": rid,
                           "node_id": pname, "trust": view.trust(pid), "lat_ewma_ms": view.latency(pid),
                           "alive": w.alive, "layer_start": row.layer_start, "layer_end": row.layer_end,
                           "in_chain": pid in in_chain, "failed_id": name_of.get(fail_id, fail_id)})
    for pid, trust, lat in gen.selected:
        logs["sel"].row({"run_id": run_id, "mode": mode, "target_new_tokens": length, "request_id": rid,
                         "node_id": name_of.get(pid, pid), "trust": trust, "lat_ewma_ms": lat})
    if ok:
        tr = _trace_log(logs, cfg.out, mode, lab.model)
        for k, t in enumerate(gen.trace):
            tr.row({"token_idx": k, "trace_id": rid, "e2e_latency_ms": t["e2e_ms"], "sum_hop_cpu_ms": t["hop_cpu_ms"],
                    "sum_hop_wall_ms": t["hop_wall_ms"], "num_hops": t["hops"], "max_hop_rss_mb": "",
                    "client_rss_mb": rss})
    return {"success": ok, "token_ms": [t["e2e_ms"] for t in gen.trace] if ok else [],
            "chain_len": len(gen.selected), "selection_ms": gen.selection_ms if gen.selected else None,
            "repairs": len(gen.repair_log), "tokens_match": ok and tokens == ref,
            "checks": dict(gen.checker.counters), "convictions": len(gen.accounts.wrong_outputs),
            "hop_calls": len(gen.trace) * len(gen.hops), "unreached": len(gen.accounts.unreached)}


def _trace_log(logs: dict, out: Path, mode: str, model: str) -> CsvLog:
    """The reference's per-token trace file of one mode (opened on its first successful request)."""
    key = ("trace", mode)
    if key not in logs:
        safe = model.replace("/", "_")
        logs[key] = CsvLog(out / f"distributed_trace_{mode}_{safe}_{int(time.time())}.csv", TRACE_COLUMNS)
    return logs[key]


async def _await_reports(cache: Follower, raws: list[bytes], timeout: float = 2.0) -> None:
    """Requests run back to back: let this request's reports come back through an anchor into the seeker's
    replica (tens of ms) before the next routing decision, as the paper's trust updates do."""

    keys = []
    for raw in raws:
        e = decode_envelope(raw)
        keys.append((e.sender, e.seq))
    with trio.move_on_after(timeout):
        while not all(k in cache.replica.ledger for k in keys):
            await cache.ingested.wait()
