"""The networks `gtracd bench attack` runs its scenarios on (real daemons on loopback), the honest seeker it
measures with, and the attacker's node. The scenarios are in benchmarks/attack.py (issue 10) and
benchmarks/trust2.py (issue 23).
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..config import load_settings
from ..daemon.node import running_node
from ..engine.models import resolve_model
from ..harness.controlnet import ControlNet
from ..harness.launch import start_workers, stop_all
from ..identity import Identity
from ..lab.network import Lab, LabSettings, setting_flags
from ..lab.plan import load_plan
from ..lab.profiles import load_catalog
from ..routing import Params
from ..seeker.generation import Generation, GenerationFailed
from ..seeker.running import running_seeker

if TYPE_CHECKING:
    from gtracd.config import Settings
    from gtracd.control.follower import Follower
    from gtracd.control.peerview import PeerView
    from gtracd.daemon.node import Node


MODEL = "tiny-llama-4"


PROMPTS = [[5 + (7 * i + k) % 90 for k in range(12)] for i in range(16)]


def say(msg: str) -> None:
    print(f"gtracd bench attack: {msg}", file=sys.stderr, flush=True)


def bench_settings(network: str, boot: list[str], root: Path, keystore: Path, **flags):
    return load_settings(None, {"network": network, "bootstrap": boot, "data_dir": str(root),
                                "keystore": str(keystore), "node_timeout_s": 10.0, "sync_s": 1.0, **flags}, env={})


class Seeker:
    """An honest seeker in this process: its node, cache (ledger replica, heartbeats, outbox) and view."""

    def __init__(self, node: Node, cache: Follower, view: PeerView, net, s: Settings, model: str):
        self.node, self.cache, self.view, self.net, self.s, self.model = node, cache, view, net, s, model
        self.params = Params(trust_floor=s.trust_floor, penalty_ms=s.penalty_ms)
        self.reports: list[dict] = []

    async def wait_alive(self, ids, timeout: float = 60.0) -> None:
        with trio.fail_after(timeout):
            while not set(ids) <= {p for p, w in self.view.workers.items() if w.alive}:
                await trio.sleep(0.05)

    async def request(self, prompt=None, tokens: int = 8, mode: str = "g-trac", rate: float = 0.0, calls: int = 4,
                      exclude=(), *, messages=None, hold=(), ignore_eos: bool = True, probation: int = 0) -> dict:
        """One generation; its trust reports are sent like a real seeker's. Returns what happened. `prompt`
        (token ids) or `messages` (chat: the seeker tokenizes). `hold`: peers that look busy while routing
        chooses the chain (so an attacker's worker is the one chosen; they serve as replacements and
        witnesses after)."""
        gen = Generation(self.net, self.view, self.params, mode,
                         max_length=len(prompt) + tokens + 4 if prompt is not None else 256,
                         hop_timeout_floor_s=2.0, spot_check_rate=rate, spot_check_calls=calls,
                         spot_check_probation=probation)
        gen.accounts.avoid(exclude)
        for p in hold:
            self.view.refused(p, time.monotonic() + 120)
        out = {"ok": False, "tokens": [], "text": "", "chain": [], "error": None, "prompt_ids": None}
        t0 = time.perf_counter()
        culprit = None
        try:
            with trio.fail_after(90):
                await gen.start()
                out["routed"] = [p for p, _, _ in gen.selected]  # what routing chose, before any repair
                for p in hold:
                    self.view.busy_until.pop(p, None)
                ids = await gen.tokenize(messages=messages) if messages is not None else list(prompt)
                out["prompt_ids"] = ids
                r = await gen.turn(ids, tokens, ignore_eos=ignore_eos)
            out.update(ok=True, tokens=r.tokens, text=r.text, eos=r.eos, step_ms=r.step_ms)
        except GenerationFailed as e:
            out["error"], culprit = str(e), e.culprit
        except trio.TooSlowError:
            out["error"] = "timed out"
        finally:
            for p in hold:
                self.view.busy_until.pop(p, None)
        out["s"] = time.perf_counter() - t0
        out["chain"] = gen.chain
        if out["ok"]:
            await gen.aclose()
        else:
            await gen.cancel()
        gen.trust_outcome(out["ok"], culprit)
        bodies = gen.report_bodies(self.s.network, out["ok"], culprit, len(out["tokens"]))
        self.reports += bodies
        out.update(reports=bodies, checks=dict(gen.checker.counters), wrong_outputs=list(gen.accounts.wrong_outputs),
                   repairs=list(gen.repair_log))
        await self.cache.report(bodies)
        return out


@asynccontextmanager
async def seeker(network: str, boot: list[str], root: Path, keystore: Path, model: str, **flags):
    s = bench_settings(network, boot, root, keystore, model=model, **flags)
    async with running_seeker(f"bench-seeker-{os.urandom(3).hex()}", Identity.generate(), s, follow=True) as sk:
        try:
            yield Seeker(sk.node, sk.cache, sk.view, sk.net, s, model)
        finally:
            with trio.CancelScope(shield=True):
                await sk.cache.drain(5.0)


@asynccontextmanager
async def attacker(network: str, boot: list[str], root: Path):
    """A node run by the attacker: its own identity, joined to the network's gossip."""

    s = bench_settings(network, boot, root, root / "attacker-keys")
    async with running_node("seeker", f"attacker-{os.urandom(3).hex()}", Identity.generate(), s, None,
                            False) as node:
        yield node


def ledger_trust(cn, name: str) -> dict:
    st = cn.status(name) or {}
    return st.get("trust", {})


class WorkerNet:
    """2 keyring anchors and real worker processes (`gtracd --role worker`, one per range) on loopback."""

    def __init__(self, root: Path, name: str = "workers", model: str = MODEL,
                 ranges: tuple = ((0, 2), (2, 4)), worker_flags: tuple = ("--max-sessions", "8", "--cache-tokens",
                                                                          "2048"), node_timeout_s: float = 10.0):

        self.root, self.model, self.ranges, self.worker_flags = root / name, model, list(ranges), list(worker_flags)
        self.cn = ControlNet(root=self.root / "cn", network=f"attack-{name}", heartbeat_s=1.0, sync_s=1.0,
                             node_timeout_s=node_timeout_s)
        self.workers = []

    def start(self) -> None:

        folder = resolve_model(self.model, log=say)
        self.cn.start(["a1", "a2"])
        flags = ["--network", self.cn.network, "--bootstrap", ",".join(self.cn.anchor_addrs.values()),
                 "--data-dir", str(self.cn.root), "--heartbeat-s", "1", *self.worker_flags]
        self.workers = start_workers(str(folder), self.ranges, extra=flags)

    @property
    def boot(self) -> list[str]:
        return list(self.cn.anchor_addrs.values())

    def ids(self) -> list[str]:
        return [w.info["peer_id"] for w in self.workers]

    def alive(self) -> bool:
        return all(w.proc.poll() is None for w in self.workers) and all(
            p.proc.poll() is None for p in self.cn.procs.values())

    def stop(self) -> list[int]:
        rcs = stop_all(self.workers)
        return rcs + list(self.cn.stop_all().values())

    def seeker(self, **flags):
        return seeker(self.cn.network, self.boot, self.cn.root, self.cn.keystore, self.model, **flags)


def cost_net(root: Path) -> WorkerNet:
    """SmolLM2 over 3 hops (0:10, 10:20, 20:30), two replicas of each on separate worker processes (one torch
    thread each), so a checked hop has a witness: what spot checks cost where compute is real."""
    return WorkerNet(root, "cost", "smollm2-135m", ((0, 10), (10, 20), (20, 30)) * 2, (), node_timeout_s=20.0)


async def settle(sk: Seeker, timeout: float = 20.0) -> None:
    """Until the outbox is acknowledged and the replica caught up with the anchors."""
    with trio.move_on_after(timeout):
        while sk.cache.outbox:
            await sk.cache.flush_once()
            await trio.sleep(0.1)
    await trio.sleep(2.5)  # anchors announce and sync within sync_s


# the byzantine profile's bet: fast and trusted-looking (1 ms against the honest replicas' 40 ms, trust0 1.0)
LAB_PLAN = """peer_id,template,host_id,host_type,ip,port,layer_start,layer_end,cpu_load,fail_rate,trust0,net_delay_ms,byzantine_rate
g0,guaranteed_safe,H0,P,127.0.0.1,7100,0,1,1,0,1,2,
byz,byzantine,H1,P,127.0.0.1,7101,2,2,1,0,1,1,0.3
h1,guaranteed_safe,H2,P,127.0.0.1,7102,2,2,1,0,1,40,
h2,guaranteed_safe,H3,P,127.0.0.1,7103,2,2,1,0,1,40,
g3,guaranteed_safe,H4,P,127.0.0.1,7104,3,3,1,0,1,2,
"""


LAB_TIME_SCALE = 0.1  # emulated delays and compute x 0.1: the liar's lead (~4 ms a call) stays visible


class LabNet:
    def __init__(self, root: Path):
        self.root = root
        self.lab = None

    def start(self) -> None:
        path = self.root / "byzantine.csv"
        path.write_text(LAB_PLAN)
        plan = load_plan(path, load_catalog(None))
        self.lab = Lab(path, plan, MODEL, LabSettings(LAB_TIME_SCALE), processes=5, root=self.root / "lab",
                       network="attack-lab")
        self.lab.start(say)

    def seeker(self, **flags):
        lab = self.lab
        return seeker(lab.network, list(lab.cn.anchor_addrs.values()), lab.root, lab.keystore, MODEL,
                      **lab.settings.ledger_flags(), **flags)

    def alive(self) -> bool:
        return self.lab.alive()

    def stop(self) -> list[int]:
        return self.lab.stop()


class LedgerNet:
    # short windows so standing is reachable in a bench run: one corroboration counts per window, and standing
    # counts from a window after the first report
    RULES = {"standing_age_s": 8.0, "standing_reports": 3, "newcomer_budget": 0.005, "reporter_window_s": 4.0}

    def __init__(self, root: Path):
        self.cn = ControlNet(root=root / "ledger", network="attack-ledger", heartbeat_s=1.0, sync_s=1.0,
                             node_timeout_s=30.0, anchor_extra=setting_flags(self.RULES))
        self.honest: list = []  # established reporters' signers, once a scenario made them

    def start(self) -> None:
        self.cn.start(["a1", "a2", "a3"], fleet=6)

    def alive(self) -> bool:
        return all(p.proc.poll() is None for p in self.cn.procs.values())

    def stop(self) -> list[int]:
        return list(self.cn.stop_all().values())


def signed_report(signer, network: str, chain: list[str], outcome: str) -> bytes:
    return signer.sign("trust_report", {"network": network, "request_id": os.urandom(16), "model": "testbed-model",
                                        "mode": "g-trac", "chain": chain, "latency_ms": [40.0] * len(chain)
                                        if outcome == "success" else [], "outcome": outcome,
                                        "culprit": -1 if outcome == "success" else 0, "tokens": 8}).raw


async def anchored_trust(sk: Seeker, cn, ids) -> dict[str, float]:
    """Anchor a1's trust in each of `ids`, once this seeker's reports are in and the replicas caught up."""
    await settle(sk)
    return {w: ledger_trust(cn, "a1").get(w, sk.s.initial_trust) for w in ids}


async def honest_requests(sk: Seeker, requests: int, tokens: int) -> int:
    """`requests` generations of `tokens` each; how many succeeded."""
    ok = 0
    for i in range(requests):
        ok += (await sk.request(PROMPTS[i % len(PROMPTS)], tokens))["ok"]
    return ok

