"""`gtracd bench membership`: self-placing SmolLM2 workers on loopback, real processes.

One anchor (the bootstrap) and an observing seeker in this process (heartbeats + ledger replica, as a seeker
daemon keeps them). Six `--layers auto --max-layers 10` workers start at random moments; measured:

- initial_coverage_s: from the last worker being ready to every layer having >= 2 serving replicas in the
  seeker's view (the goal: <= 30 s), and the min_replicas reached;
- then a generation runs (greedy, a fault-free reference first, same prompt); after its 40th token every
  replica of its middle hop's span is killed with -9. The generation's repair waits (heal_wait_s) while an
  auto worker with a redundant range drains and moves into the hole. heal_s = kill -> a replica of the
  span serving again in the seeker's view, reported in parts: detect (the killed workers' last heartbeat +
  node_timeout_s), when the mover announced its move, and the mover's own timeline (how long it saw the
  hole before moving: hysteresis; its re-check; its drain; its shard load). The goal: heal_s <=
  2 x node_timeout_s + load;
- moves_max_per_worker after a quiet period (no oscillation: goal <= 1), and generation_identical.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from ..catalog.fingerprint import pinned_model
from ..config import load_settings
from ..harness.controlnet import ControlNet
from ..harness.launch import start_procs
from ..identity import Identity
from ..routing import Params
from ..routing.coverage import coverage
from ..seeker.generation import Generation
from ..seeker.running import running_seeker
from .pipeline import MESSAGES

if TYPE_CHECKING:
    from gtracd.control.peerview import PeerView

HEARTBEAT_S = 2.0
NODE_TIMEOUT_S = 6.0
DRAIN_S = 1.0
WORKERS = 6
MAX_LAYERS = 10
TOKENS = 160
KILL_AT = 40


def _cmd(cn: ControlNet, name: str) -> tuple[list[str], str]:
    return (["--role", "worker", "--layers", "auto", "--max-layers", str(MAX_LAYERS), "--model", "smollm2-135m",
             "--ephemeral", "--name", name, "--network", cn.network, "--bootstrap", ",".join(cn.anchor_addrs.values()),
             "--data-dir", str(cn.root), "--keystore", str(cn.keystore), "--heartbeat-s", str(HEARTBEAT_S),
             "--node-timeout-s", str(NODE_TIMEOUT_S), "--drain-s", str(DRAIN_S), "--heal-after-s", str(HEARTBEAT_S)],
            name)


class Observer:
    """What the seeker sees, with the time each change was first seen."""

    def __init__(self, view: PeerView, model: str):
        self.view, self.model = view, model
        self.changed = trio.Event()
        view.listeners.append(self._poke)

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def coverage(self):
        return coverage(self.view.snapshot(self.model), 0.0)

    async def until(self, pred, timeout: float):
        """Wait until pred() holds, re-checked on every view change and at least every 0.2 s (liveness is a
        matter of time passing, not of a message)."""
        with trio.fail_after(timeout):
            while not (got := pred()):
                with trio.move_on_after(0.2):
                    await self.changed.wait()
            return got


async def _run(rng: random.Random) -> dict:
    cn = ControlNet(network="bench-membership", heartbeat_s=HEARTBEAT_S, node_timeout_s=NODE_TIMEOUT_S)
    procs: dict[str, object] = {}
    out: dict = {"workers": WORKERS, "max_layers": MAX_LAYERS, "heartbeat_s": HEARTBEAT_S,
                 "node_timeout_s": NODE_TIMEOUT_S, "drain_s": DRAIN_S}
    try:
        cn.start(["a1"])
        s = load_settings(flags={"network": cn.network, "bootstrap": list(cn.anchor_addrs.values()),
                                 "data_dir": str(cn.root / "observer"), "keystore": str(cn.keystore),
                                 "node_timeout_s": NODE_TIMEOUT_S, "heal_wait_s": 120.0})
        model, depth = pinned_model("smollm2-135m")
        async with running_seeker("observer", Identity.generate(), s, follow=True) as sk:
            node, view, cache = sk.node, sk.view, sk.cache
            obs = Observer(view, model)

            def ranges() -> dict[str, tuple[int, int]]:  # where each worker is now, as its heartbeats say
                out = {}
                for nm, p in procs.items():
                    w = view.workers.get(p.info["peer_id"])
                    if w is not None:
                        out[nm] = (w.start, w.end)
                return out

            # 1. six auto workers at random moments
            t0 = time.monotonic()
            ready_at: dict[str, float] = {}

            async def start_one(name: str, delay: float) -> None:
                await trio.sleep(delay)
                p = (await trio.to_thread.run_sync(start_procs, [_cmd(cn, name)], 600, cn.root))[0]
                procs[name] = p
                ready_at[name] = time.monotonic() - t0
                log(f"  {name} ready at {ready_at[name]:.1f}s: layers {p.info['start']}:{p.info['end']}")

            names = [f"auto{i}" for i in range(WORKERS)]
            delays = sorted(rng.uniform(0, 20) for _ in names)
            log(f"starting {WORKERS} auto workers at {', '.join(f'{d:.1f}' for d in delays)}s")
            async with trio.open_nursery() as n:
                for name, d in zip(names, delays, strict=True):
                    n.start_soon(start_one, name, d)
            last_ready = max(ready_at.values())
            cov = await obs.until(lambda: (c := obs.coverage()).min_replicas >= 2 and c, 120)
            out["initial_coverage_s"] = round(max(0.0, time.monotonic() - t0 - last_ready), 2)
            out["min_replicas"] = cov.min_replicas
            out["placements"] = {n: list(r) for n, r in ranges().items()}
            out["ready_at_s"] = {n: round(t, 1) for n, t in ready_at.items()}
            log(f"coverage >= 2 everywhere {out['initial_coverage_s']}s after the last worker was ready: "
                f"{out['placements']}")
            out["initial_moves"] = {n: (cn.status(n) or {}).get("placement", {}).get("moves", 0) for n in names}

            # 2. a fault-free reference, then the same generation through a kill -9 of a whole span
            net = sk.net
            params = Params(trust_floor=s.trust_floor)

            async def generate(fired: dict | None):
                gen = Generation(net, view, params, rng=random.Random(0), heal_wait_s=s.heal_wait_s)
                await gen.start()
                ids = await gen.tokenize(messages=MESSAGES)
                count = 0

                def on_piece(_):
                    nonlocal count
                    count += 1
                    if fired is not None and count == KILL_AT:  # every replica of the middle hop's span
                        fired["span"] = (gen.hops[1].peer.start, gen.hops[1].peer.end)
                        fired["t"] = time.monotonic()
                        fired["killed"] = [nm for nm, r in ranges().items() if r == fired["span"]]
                        for nm in fired["killed"]:
                            procs[nm].proc.kill()  # SIGKILL; no wait here, the event loop keeps running
                        fired["event"].set()

                r = await gen.turn(ids, TOKENS, on_piece, ignore_eos=True)
                await gen.aclose()
                return gen, r

            _, ref = await generate(None)
            log(f"reference: {len(ref.tokens)} tokens")
            fired: dict = {"event": trio.Event()}
            result: dict = {}

            async def gen_task():
                result["gen"], result["r"] = await generate(fired)

            async def heal_watch():
                with trio.fail_after(300):
                    await fired["event"].wait()
                span, t_kill = fired["span"], fired["t"]
                killed = {procs[nm].info["peer_id"] for nm in fired["killed"]}

                def announced():
                    return next((w for w in view.workers.values() if w.state == "draining" and w.target
                                 and tuple(w.target) == span), None)

                def serving():
                    w = view.workers.get(result.get("mover", ""))
                    return w is not None and w.state == "serving" and (w.start, w.end) == span

                last_heard = max(view.workers[p].last_seen for p in killed if p in view.workers)
                # last_seen is on the monotonic clock (liveness never follows the wall clock), like t_kill
                result["detect"] = last_heard + NODE_TIMEOUT_S - t_kill  # when heartbeats say "gone"
                result["mover"] = (await obs.until(announced, 120)).peer_id
                result["decide"] = time.monotonic() - t_kill
                await obs.until(serving, 120)
                result["healed"] = time.monotonic() - t_kill

            async with trio.open_nursery() as n:
                n.start_soon(gen_task)
                n.start_soon(heal_watch)
            gen, r = result["gen"], result["r"]
            mover = next(nm for nm, p in procs.items() if p.info["peer_id"] == result["mover"])
            parts = (cn.status(mover) or {}).get("placement", {}).get("last_move") or {}
            load_s = parts.get("load_s", float("nan"))
            out["killed_span"] = list(fired["span"])
            out["killed"] = fired["killed"]
            out["mover"] = mover
            out["heal_s"] = round(result["healed"], 2)
            # detect: the killed workers' last heartbeat + node_timeout_s; the mover's own timeline: how long it
            # saw the hole before moving (hysteresis), its re-check, its drain and its shard load; the rest is
            # heartbeat propagation
            out["heal_parts"] = {"detect_s": round(result["detect"], 2), "mover_announced_s": round(result["decide"], 2),
                                 **{k: parts.get(k) for k in ("hole_seen_s", "recheck_s", "drain_s", "load_s")}}
            out["heal_goal_s"] = round(2 * NODE_TIMEOUT_S + load_s, 2)
            out["generation_identical"] = r.tokens == ref.tokens
            out["tokens"] = len(r.tokens)
            out["repairs"] = [{"failed": x["failed"][-8:], "blamed": x["blamed"], "verdict": x["verdict"]}
                              for x in gen.repair_log]
            out["replacements_that_failed"] = [{"peer": f["peer"][-8:], "blamed": f["blamed"]}
                                               for f in gen.replacement_failures]  # the other killed replica
            killed_ids = {procs[nm].info["peer_id"] for nm in fired["killed"]}
            out["blamed_only_the_killed"] = all(x["failed"] in killed_ids for x in gen.repair_log if x["blamed"]) \
                and all(f["peer"] in killed_ids for f in gen.replacement_failures if f["blamed"])
            log(f"healed in {out['heal_s']}s ({out['heal_parts']}); generation identical: "
                f"{out['generation_identical']}")

            # 3. a quiet period: nobody moves again
            await trio.sleep(4 * HEARTBEAT_S + 2)
            moves = {nm: (cn.status(nm) or {}).get("placement", {}).get("moves", 0) for nm in procs
                     if nm not in fired["killed"]}
            out["moves"] = moves
            out["moves_max_per_worker"] = max(moves.values())
            out["final_min_replicas"] = obs.coverage().min_replicas
            out["decisions"] = {nm: (cn.status(nm) or {}).get("placement", {}).get("decisions", []) for nm in moves}
            cache.close()
            node.nursery.cancel_scope.cancel()
    finally:
        for nm in procs:  # the workers' own account of what they decided, whatever happened
            for line in (cn.status(nm) or {}).get("placement", {}).get("decisions", []):
                log(f"  {nm}: {line}")
        for p in procs.values():
            p.stop()
        cn.stop_all()
        shutil.rmtree(cn.root, ignore_errors=True)
    return out


def log(m: str) -> None:
    print(m, file=sys.stderr, flush=True)


def main(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    out = trio.run(_run, rng)
    goals = {"initial_coverage_s": out["initial_coverage_s"] <= 30, "min_replicas": out["min_replicas"] >= 2,
             "heal_s": out["heal_s"] <= out["heal_goal_s"], "moves_max_per_worker": out["moves_max_per_worker"] <= 1,
             "generation_identical": out["generation_identical"]}
    out["goals_met"] = goals
    if not args.json:
        for k in ("initial_coverage_s", "min_replicas", "heal_s", "heal_goal_s", "heal_parts", "moves_max_per_worker",
                  "generation_identical"):
            print(f"{k:>24}: {out[k]}")
    print(json.dumps(out))
    if args.record:
        Path(args.record).write_text(json.dumps(out, indent=1) + "\n")
    return 0
