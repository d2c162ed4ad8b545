"""`gtracd lab up`: a plan's emulated network on loopback — keyring anchors and a few host processes that
each serve many virtual peers — started together and stopped together (a lab that cannot start stops
everything it started).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..config import load_settings
from ..control.follower import anchor_ids
from ..daemon.node import running_node
from ..errors import UserError
from ..harness.controlnet import ControlNet
from ..harness.launch import start_procs
from ..identity import Identity, Keystore
from ..net.ledgersync import submit
from ..wire.envelope import Signer
from .layout import groups
from .plan import Plan, format_plan, load_plans, plan_paths
from .profiles import load_catalog

if TYPE_CHECKING:
    from gtracd.daemon.node import Node


def lab_plan(paths: list[Path], catalog, root: Path) -> tuple[Path, Plan]:
    """Load one or several plan files as one network; several are merged into `root`/plan.csv, the one file
    the lab's host processes read."""
    plan = load_plans(paths, catalog)
    if len(paths) == 1:
        return paths[0], plan
    merged = root / "plan.csv"
    merged.write_text(format_plan(plan))
    return merged, plan


def model_for(plan: Plan, model: str | None) -> str:
    """The plan's depth picks the model: SmolLM2 for 30 layers, else a tiny random Llama of that depth."""
    if model:
        return model
    return "smollm2-135m" if plan.layers == 30 else f"tiny-llama-{plan.layers}"


@dataclass
class LabSettings:
    """Every timing the lab derives from the time scale, in one place (paper values x scale, with floors
    where the machine's own overhead would otherwise trip them)."""

    time_scale: float = 1.0

    @property
    def heartbeat_s(self) -> float:  # scaled no further than 1/4: hundreds of identities' signatures cost CPU
        return 8.0 * max(0.25, self.time_scale)

    @property
    def node_timeout_s(self) -> float:
        return 30.0 * max(0.25, self.time_scale)

    @property
    def latency0_ms(self) -> float:
        return 250.0 * self.time_scale

    @property
    def penalty_ms(self) -> float:
        return 1000.0 * self.time_scale

    @property
    def hop_timeout_floor_s(self) -> float:  # not below 0.5 s: a loaded 2-core machine stalls processes that long
        return max(0.5, 2.0 * self.time_scale)

    def ledger_flags(self) -> dict:
        """Settings anchors and the sweep's seeker share (the ledger must derive the same numbers)."""
        return {"latency0_ms": self.latency0_ms, "node_timeout_s": self.node_timeout_s, "sync_s": 1.0,
                # the paper has no per-reporter budget or rate limit: one seeker drives a whole sweep
                "reporter_budget": 1e9, "report_rate": 1000.0, "report_burst": 10000.0,
                "request_timeout_s": 3600.0}


@dataclass
class Lab:
    plan_path: Path
    plan: Plan
    model: str
    settings: LabSettings
    processes: int = 2
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="gtracd-lab-")))
    seed: int = 0
    profiles: str | None = None
    network: str = "gtrac-lab"
    secret: str = field(default_factory=lambda: secrets.token_hex(8))
    hosts: list = field(default_factory=list)
    host_cmds: list = field(default_factory=list)  # how each host process was started (a restart repeats it)
    cn: object = None
    peers: dict[str, str] = field(default_factory=dict)  # plan peer id -> identity peer id

    @property
    def keystore(self) -> Path:
        return self.root / "keys"

    def start(self, status=lambda m: None, timeout: float = 300.0) -> None:
        ls = self.settings
        # ControlNet passes --sync-s and --node-timeout-s itself
        extra = {k: v for k, v in ls.ledger_flags().items() if k not in ("sync_s", "node_timeout_s")}
        self.cn = ControlNet(root=self.root, network=self.network, heartbeat_s=ls.heartbeat_s, sync_s=1.0,
                             node_timeout_s=ls.node_timeout_s, anchor_extra=setting_flags(extra))
        n_groups = len(groups(self.plan, self.processes))
        status(f"gtracd lab: starting 2 anchors and {n_groups} host processes for {len(self.plan.rows)} virtual "
               f"peers ({self.model}, {self.plan.layers} layers, time scale {ls.time_scale:g})")
        far = self.plan.addresses()
        if far:
            status(f"gtracd lab: the plan's {self.plan.processes()} worker processes on {len(far)} non-loopback "
                   f"addresses ({', '.join(far[:3])}{', ...' if len(far) > 3 else ''}) are emulated on loopback "
                   f"127.0.0.1; a plan's ip:port only keeps the peers of one process together")
        try:
            self.cn.start(["anchor-1", "anchor-2"])
            boot = ",".join(self.cn.anchor_addrs.values())
            cmds = []
            for g in range(n_groups):
                cmds.append((["lab", "host", "--plan", str(self.plan_path), "--group", str(g), "--groups",
                              str(self.processes), "--secret", self.secret, "--seed", str(self.seed),
                              "--time-scale", str(ls.time_scale), "--model", self.model,
                              "--network", self.network, "--bootstrap", boot, "--data-dir", str(self.root),
                              "--heartbeat-s", str(ls.heartbeat_s), "--log-level", "ERROR"]
                             + (["--profiles", str(self.profiles)] if self.profiles else []), f"host-{g}"))
            self.host_cmds = cmds
            self.hosts = start_procs(cmds, timeout, self.root)
        except BaseException as e:
            self.stop()
            if isinstance(e, RuntimeError):
                raise UserError(f"the lab could not start (everything it started is stopped): {_last_line(e)}") \
                    from None
            raise
        for h in self.hosts:
            self.peers.update(h.info["peers"])
        self.write_state()

    def write_state(self) -> None:
        state = {"network": self.network, "plan": str(self.plan_path), "model": self.model,
                 "time_scale": self.settings.time_scale, "data_dir": str(self.root), "keystore": str(self.keystore),
                 "anchors": list(self.cn.anchor_addrs.values()), "anchor_keys": list(self.cn.anchor_addrs),
                 "hosts": [h.info["addrs"][0] for h in self.hosts], "peers": self.peers,
                 "settings": {"heartbeat_s": self.settings.heartbeat_s, **self.settings.ledger_flags()},
                 "pid": os.getpid(), "started": time.time()}
        (self.root / "lab.json").write_text(json.dumps(state, indent=1))

    def alive(self) -> bool:
        return all(h.proc.poll() is None for h in self.hosts) and all(
            p.proc.poll() is None for p in (self.cn.procs.values() if self.cn else []))

    def restart(self, g: int, timeout: float = 120.0) -> int:
        """Churn: kill host process g with SIGKILL and start it again (same identities: they derive from the lab's
        secret); returns how many virtual peers it serves. Blocking (run it in a thread)."""
        self.hosts[g].kill9()
        self.hosts[g] = start_procs([self.host_cmds[g]], timeout, self.root)[0]
        return len(self.hosts[g].info["peers"])

    def stop(self) -> list[int]:
        rcs = [h.stop() for h in self.hosts]
        if self.cn is not None:
            rcs += list(self.cn.stop_all().values())
        self.hosts = []
        return rcs


PRIORS_PER_RECORD = 96  # ledger_epoch schema cap


def priors_records(operator, lab: Lab, network: str, epoch: int) -> list[bytes]:
    """The plan's trust0 priors as ledger_epoch records signed by a keyring anchor's key (pure)."""

    priors = sorted((lab.peers[r.peer_id], r.trust0) for r in lab.plan.rows)
    signer = Signer(operator)
    return [signer.sign("ledger_epoch", {"network": network, "epoch": epoch,
                                         "priors": dict(priors[i:i + PRIORS_PER_RECORD]),
                                         "note": f"lab plan {lab.plan_path.name}"}).raw
            for i in range(0, len(priors), PRIORS_PER_RECORD)]


async def submit_priors(node: Node, anchors: list[str], operator, lab: Lab, network: str, epoch: int) -> None:
    """Submit the priors epoch to every anchor; one anchor is enough (anti-entropy brings the others)."""



    raws = priors_records(operator, lab, network, epoch)
    accepted = 0
    for pid in anchors:
        try:
            with trio.fail_after(15):
                lp = await node.links.connect(pid)
                ack = await submit(node.host, lp, network, raws)
            accepted += all(r in ("admitted", "duplicate") for r in ack["results"])
        except Exception as e:  # one anchor down is fine
            logging.getLogger("gtracd.lab").warning("epoch not submitted to anchor %s: %r", pid[-8:], e)
    if not accepted:
        raise UserError("no anchor accepted the plan's trust priors (ledger epoch)")


def announce_priors(lab: Lab) -> int:
    """`lab up`: put the plan's trust0 into the anchors' ledger as an anchor-signed epoch (numbered by the
    clock, so it is above any epoch a reused --dir already holds). Returns the epoch."""


    s = load_settings(None, {"network": lab.network, "bootstrap": list(lab.cn.anchor_addrs.values()),
                             "data_dir": str(lab.root), "keystore": str(lab.keystore)}, env={})
    ks = Keystore(lab.keystore)
    epoch = int(time.time())

    async def run() -> None:
        async with running_node("seeker", "lab-operator", Identity.generate(), s, None, False) as node:
            await submit_priors(node, sorted(anchor_ids(lab.keystore)), ks.load("anchor-1"), lab, lab.network, epoch)
            node.nursery.cancel_scope.cancel()

    trio.run(run)
    return epoch


def setting_flags(values: dict) -> list[str]:
    """Settings as command-line flags: {"sync_s": 1.0} -> ["--sync-s", "1"]."""
    return [x for k, v in values.items() for x in (f"--{k.replace('_', '-')}", f"{v:g}")]


def _last_line(e: BaseException) -> str:
    lines = [x for x in str(e).splitlines() if x.strip()]
    useful = [x for x in lines if "error" in x.lower()] or lines
    return useful[-1].strip()[:300] if useful else str(e)


def run_up(args: argparse.Namespace) -> int:
    """`gtracd lab up`: start the lab and keep it running until Ctrl-C / SIGTERM."""


    catalog = load_catalog(args.profiles)
    paths = plan_paths(args.plan)
    load_plans(paths, catalog)  # refused before anything is created
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="gtracd-lab-"))
    root.mkdir(parents=True, exist_ok=True)
    path, plan = lab_plan(paths, catalog, root)
    lab = Lab(path, plan, model_for(plan, args.model), LabSettings(args.time_scale), args.processes,
              root, args.seed, args.profiles)
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    def stop_lab() -> list[int]:
        rcs = lab.stop()
        if not args.dir:  # a temporary lab leaves nothing behind (its anchor keys included)
            shutil.rmtree(root, ignore_errors=True)
        return rcs

    try:
        lab.start(say)
        epoch = announce_priors(lab)
        say(f"gtracd lab: the plan's trust0 priors are ledger epoch {epoch} (anchor-signed)")
    except BaseException:
        stop_lab()
        raise
    seeker = {k: v for k, v in lab.settings.ledger_flags().items() if not k.startswith("report_")}  # anchors' own
    seeker.update(penalty_ms=lab.settings.penalty_ms, hop_timeout_floor_s=lab.settings.hop_timeout_floor_s)
    say(f"gtracd lab: up; state in {root / 'lab.json'}")
    say(f"  a seeker on this lab (same ledger settings as its anchors): gtracd --role seeker --network {lab.network} "
        f"--keystore {lab.keystore} --model {lab.model} --data-dir {root / 'seekers'} --bootstrap {','.join(lab.cn.anchor_addrs.values())} "
        f"generate --prompt TEXT {' '.join(setting_flags(seeker))}")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        while not stop.wait(0.5) and lab.alive():  # a signal ends the wait at once; a dead child within 0.5 s
            pass
    finally:
        say(f"gtracd lab: stopped (exit codes {stop_lab()})")
    return 0
