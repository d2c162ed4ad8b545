"""`gtracd bench wan`: the same greedy generation (SmolLM2, 3 hops) over loopback, over direct links between
network namespaces, and through a relay (workers on a LAN the seeker cannot reach), links capped at 10 Mbit/s
with `tc tbf` (harness/netns.py); then DCUtR, a relay killed mid-generation, mDNS and an invite.

Every daemon is a real process (`gtracd --role ...`), each seeker a `generate --json` run, so what is measured
is what a user gets. Figures are measured in this run only; tok/s is the seeker's decode rate (the prompt's
prefill and the dial excluded); bytes per token per hop are a decode step's frames both ways on one hop, as the
seeker counted them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ..catalog.fingerprint import depth as depth_of
from ..daemon.lifeline import child_env
from ..engine.models import resolve_model
from ..errors import UserError
from ..harness.controlnet import ControlNet
from ..harness.launch import start_procs, status_of, stop_all, worker_env
from ..harness.netns import Topology, unavailable
from .common import print_table

PROMPT = "Once upon a time, in a small village by the sea,"
RATE_MBIT = 10
GOALS = {"relayed_over_direct": 0.7, "mdns_found_s": 5.0}
DTYPES = ("float32", "float16", "bfloat16")


def _ranges(depth: int, hops: int = 3) -> list[tuple[int, int]]:
    cuts = [round(depth * k / hops) for k in range(hops + 1)]
    return list(zip(cuts, cuts[1:], strict=False))


def _worker(i: int | str, a: int, b: int, model: str, *extra: str) -> tuple[list[str], str]:
    name = i if isinstance(i, str) else f"w{i}"
    return (["--role", "worker", "--layers", f"{a}:{b}", "--model", model, "--ephemeral", "--name", name,
             "--drain-s", "1", "--heartbeat-s", "1", *extra], name)


def _wait(pred, timeout: float, what: str) -> None:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _generate(model: str, tokens: int, where, extra: list[str], popen: bool = False, gen: tuple = ()):
    argv = [sys.executable, "-m", "gtracd.cli", "--role", "seeker", "--ephemeral", "--name", "s", *extra,
            "generate", *gen, "--prompt", PROMPT, "--model", model, "--max-new-tokens", str(tokens), "--json", "--quiet",
            "--speculate", "off", "--node-timeout-s", "6"]
    argv = where(argv)
    if popen:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=child_env(worker_env()))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=child_env(worker_env()))
    return _result(out.returncode, out.stdout, out.stderr)


def _while_running(p: subprocess.Popen, probe, period: float) -> dict:
    """Call `probe()` every `period` s while the seeker `p` runs, until it returns True (at most 300 s); then
    the seeker's result."""
    t0 = time.monotonic()
    probing = True
    while p.poll() is None and time.monotonic() - t0 < 300:
        probing = probing and not probe()
        time.sleep(period)
    out, err = p.communicate(timeout=300)
    return _result(p.returncode, out, err)


def _result(rc: int, stdout: str, stderr: str) -> dict:
    if rc != 0:
        raise RuntimeError(f"seeker failed: {stderr[-2000:]}")
    return json.loads(stdout.splitlines()[-1])


def _anchor(t: Topology, name: str, tmp: Path, network: str, *extra: str):
    a = start_procs([(["--role", "anchor", "--ephemeral", "--name", name, "--network", network, "--listen",
                       "/ip4/0.0.0.0/tcp/0", "--data-dir", str(tmp / name), *extra], name)], 60, tmp,
                    wrap=lambda n, argv: t.cmd("router", argv))[0]
    on = {lan: next(x for x in a.info["addrs"] if f"/ip4/{t.ip('router', lan)}/" in x) for lan in t.lans}
    return a, on


def run(model_spec: str, tokens: int, say=print) -> dict:
    why = unavailable()
    if why:
        raise UserError(f"bench wan needs network namespaces: {why}")
    folder = resolve_model(model_spec, log=lambda m: say(m))
    model, depth = str(folder), depth_of(folder)
    ranges = _ranges(depth)
    hops = len(ranges)
    tmp = Path(tempfile.mkdtemp(prefix="gtracd-wan-"))
    res: dict = {"model": model_spec, "tokens": tokens, "hops": hops, "rate_mbit": RATE_MBIT}
    said = say

    def say(msg: str) -> None:  # each phase's start also shows what the earlier ones measured
        said(f"{msg}" + (f" (so far: {json.dumps(res)})" if len(res) > 4 else ""))

    say("loopback: 3 workers, every wire dtype")
    ws = start_procs([_worker(i, a, b, model) for i, (a, b) in enumerate(ranges)], 300, tmp)
    try:
        peers = [x for w in ws for x in ("--peer", w.addr)]
        runs = {d: _generate(model, tokens, lambda v: v, [], gen=(*peers, "--wire-dtype", d)) for d in DTYPES}
    finally:
        stop_all(ws)
    ref = runs["float32"]["tokens"]
    res["loopback_tok_s"] = round(runs["float32"]["tok_s"], 2)
    res["bytes_per_token_per_hop"] = {d: r["bytes_per_step_per_hop"] for d, r in runs.items()}
    res["half_wire_identical"] = {d: runs[d]["tokens"] == ref for d in DTYPES[1:]}
    same = {"loopback": True}

    say(f"direct: LAN B -> LAN A through a forwarding router, {RATE_MBIT} Mbit/s")
    with Topology({"a": ("router", [f"w{i}" for i in range(hops)]), "b": ("router", ["s"])}, forward=True,
                  rate_mbit=RATE_MBIT) as t:
        ws = start_procs([_worker(i, a, b, model, "--listen", f"/ip4/{t.ip(f'w{i}')}/tcp/0")
                          for i, (a, b) in enumerate(ranges)], 300, tmp, wrap=lambda n, argv: t.cmd(n, argv))
        try:
            r = _generate(model, tokens, lambda v: t.cmd("s", v), [], gen=[x for w in ws for x in ("--peer", w.addr)])
        finally:
            stop_all(ws)
    res["direct_tok_s"], same["direct"] = round(r["tok_s"], 2), r["tokens"] == ref

    say("relayed: no forwarding; the workers hold slots on the router's anchor (a relay)")
    net = "bench-wan"
    with Topology({"a": ("router", [f"w{i}" for i in range(hops)]), "b": ("router", ["s"])}, forward=False,
                  rate_mbit=RATE_MBIT) as t:
        anchor, on = _anchor(t, "r", tmp, net)
        try:
            ws = start_procs([_worker(i, a, b, model, "--network", net, "--listen", "/ip4/0.0.0.0/tcp/0",
                                      "--bootstrap", on["a"], "--relay-via", on["a"], "--data-dir", str(tmp / f"rw{i}"))
                              for i, (a, b) in enumerate(ranges)], 300, tmp, wrap=lambda n, argv: t.cmd(n, argv))
            try:
                _wait(lambda: all(status_of(tmp / f"rw{i}").get("relay", {}).get("circuits") for i in range(hops)),
                      60, "the relay reservations")
                r = _generate(model, tokens, lambda v: t.cmd("s", v), ["--network", net, "--bootstrap", on["b"],
                                                                       "--data-dir", str(tmp / "rs")])
            finally:
                stop_all(ws)
        finally:
            stop_all([anchor])
    res["relayed_tok_s"], same["relayed"] = round(r["tok_s"], 2), r["tokens"] == ref
    res["relayed_over_direct"] = round(res["relayed_tok_s"] / res["direct_tok_s"], 3)

    say("DCUtR: a direct path exists but the workers announce only their relay circuits")
    with Topology({"a": ("router", [f"w{i}" for i in range(hops)]), "b": ("router", ["s"])}, forward=True,
                  rate_mbit=RATE_MBIT) as t:
        anchor, on = _anchor(t, "r", tmp, net + "-d")
        try:
            ws = start_procs([_worker(i, a, b, model, "--network", net + "-d", "--listen",
                                      f"/ip4/{t.ip(f'w{i}')}/tcp/0", "--announce", "none", "--bootstrap", on["a"],
                                      "--relay-via", on["a"], "--data-dir", str(tmp / f"dw{i}"))
                              for i, (a, b) in enumerate(ranges)], 300, tmp, wrap=lambda n, argv: t.cmd(n, argv))
            try:
                _wait(lambda: all(status_of(tmp / f"dw{i}").get("relay", {}).get("circuits") for i in range(hops)),
                      60, "the relay reservations")
                p = _generate(model, max(tokens, 48), lambda v: t.cmd("s", v),
                              ["--network", net + "-d", "--bootstrap", on["b"], "--data-dir", str(tmp / "ds")],
                              popen=True)
                upgraded = []

                def went_direct() -> bool:  # a circuit next to a direct connection, or (the circuit closed) a
                    # second direct one: a worker itself dials only the anchor, so that one is the seeker's
                    cs = [status_of(tmp / f"dw{i}").get("relay", {}).get("connections", {}) for i in range(hops)]
                    if any(c.get("upgraded") or c.get("direct", 0) >= 2 for c in cs):
                        upgraded.append(True)
                    return bool(upgraded)

                r = _while_running(p, went_direct, 0.3)
            finally:
                stop_all(ws)
        finally:
            stop_all([anchor])
    res["dcutr_upgraded"], same["dcutr"] = bool(upgraded), r["tokens"][:len(ref)] == ref[:len(r["tokens"])]

    say("relay killed: range 0 has a worker behind each of two relays; the one carrying the chain is killed")
    with Topology({"a": ("router", ["w0", "w0b"]), "b": ("router", ["s", "w1", "w2"])}, forward=False,
                  rate_mbit=RATE_MBIT) as t:
        r1, on1 = _anchor(t, "r1", tmp, net + "-k")
        r2, on2 = _anchor(t, "r2", tmp, net + "-k", "--relay-serve", "on", "--bootstrap", on1["a"])
        relays = {"w0": r1, "w0b": r2}
        try:
            common = ["--network", net + "-k", "--listen", "/ip4/0.0.0.0/tcp/0"]
            (a0, b0), (a1, b1), (a2, b2) = ranges
            cmds = [_worker(0, a0, b0, model, *common, "--bootstrap", on1["a"], "--relay-via", on1["a"],
                            "--data-dir", str(tmp / "kw0")),
                    _worker("w0b", a0, b0, model, *common, "--bootstrap", on2["a"], "--relay-via", on2["a"],
                            "--data-dir", str(tmp / "kw0b")),
                    _worker(1, a1, b1, model, *common, "--bootstrap", on1["b"], "--data-dir", str(tmp / "kw1")),
                    _worker(2, a2, b2, model, *common, "--bootstrap", on1["b"], "--data-dir", str(tmp / "kw2"))]
            ws = start_procs(cmds, 300, tmp, wrap=lambda n, argv: t.cmd(n, argv))
            try:
                _wait(lambda: all(status_of(tmp / d).get("relay", {}).get("circuits") for d in ("kw0", "kw0b")), 60,
                      "the relay reservations")
                p = _generate(model, max(tokens, 48), lambda v: t.cmd("s", v),
                              ["--network", net + "-k", "--bootstrap", f"{on1['b']},{on2['b']}", "--data-dir",
                               str(tmp / "ks")], popen=True)
                killed = []

                def kill_the_chains_relay() -> bool:
                    for name, d in (("w0", "kw0"), ("w0b", "kw0b")):
                        if status_of(tmp / d).get("sessions"):
                            time.sleep(1.0)  # a few tokens in
                            relays[name].kill9()
                            killed.append(name)
                            return True
                    return False

                r = _while_running(p, kill_the_chains_relay, 0.1)
            finally:
                stop_all(ws)
        finally:
            stop_all([r1, r2])
    repairs = r.get("repairs") or []
    res["relay_killed"] = {"killed": f"the relay of {killed[0]}" if killed else None, "repairs": [{k: x[k] for k in ("verdict", "blamed")}
                                                                        for x in repairs]}
    same["relay_killed"] = r["tokens"][:len(ref)] == ref[:len(r["tokens"])]
    res["relay_killed_repaired"] = bool(killed and repairs and same["relay_killed"]
                                        and not any(x["blamed"] for x in repairs))

    say("mDNS: an anchor on a LAN, then a worker joins with no --bootstrap")
    with Topology({"a": ("router", ["an", "w0"])}) as t:
        mcommon = ["--network", net + "-m", "--listen", "/ip4/0.0.0.0/tcp/0", "--discover", "mdns"]
        procs = start_procs([(["--role", "anchor", "--ephemeral", "--name", "an", *mcommon, "--data-dir",
                               str(tmp / "man")], "an")], 60, tmp, wrap=lambda n, argv: t.cmd(n, argv))
        try:
            procs += start_procs([_worker(0, *ranges[0], model, *mcommon, "--data-dir", str(tmp / "mw0"))], 300, tmp,
                                 wrap=lambda n, argv: t.cmd(n, argv))
            _wait(lambda: status_of(tmp / "mw0").get("mdns", {}).get("found"), 30, "mDNS discovery")
            # the newcomer's view: from starting discovery (zeroconf set up included) to the first peer found
            res["mdns_found_s"] = status_of(tmp / "mw0")["mdns"]["first_found_s"]
        finally:
            stop_all(procs)

    say("invite: gtracd invite --uses 1 on an anchor, gtracd join on a fresh device")
    res["invite_join_ok"] = _invite_round_trip(tmp)

    res["generation_identical"] = same
    res["goals_met"] = (res["relayed_over_direct"] >= GOALS["relayed_over_direct"] and all(same.values())
                        and res["dcutr_upgraded"] and res["mdns_found_s"] <= GOALS["mdns_found_s"]
                        and res["invite_join_ok"] and res["relay_killed_repaired"])
    return res


def _invite_round_trip(tmp: Path) -> bool:
    cn = ControlNet(root=tmp / "inv", network="bench-wan-invite")
    cn.start(["a1"])
    try:
        env = {**os.environ, "GTRACD_HOME": str(cn.root)}
        env.pop("GTRACD_CONFIG", None)

        def gtracd(*argv, home):
            return subprocess.run([sys.executable, "-m", "gtracd.cli", *argv], capture_output=True, text=True,
                                  timeout=60, env={**env, "GTRACD_HOME": str(home)})

        inv = gtracd("--keystore", str(cn.keystore), "invite", "--key", "a1", "--data-dir", str(cn.root), "--uses",
                     "1", home=cn.root)
        joined = gtracd("join", inv.stdout.strip(), home=tmp / "device")
        again = gtracd("join", inv.stdout.strip(), home=tmp / "device2")
        shown = gtracd("config", "show", "--json", home=tmp / "device")
        return (inv.returncode == 0 and joined.returncode == 0 and again.returncode != 0
                and json.loads(shown.stdout)["network"]["value"] == "bench-wan-invite")
    finally:
        cn.stop_all()


def main(args: argparse.Namespace) -> int:
    res = run(args.model or "smollm2-135m", args.tokens, say=lambda m: print(f"gtracd bench wan: {m}",
                                                                             file=sys.stderr, flush=True))
    if not args.json:
        print_table(f"bench wan: {res['hops']} hops, {res['tokens']} greedy tokens, links {RATE_MBIT} Mbit/s", res)
    print(json.dumps(res))
    return 0
