"""Hosts on one machine (issue 25, item 1): network namespaces as LANs; a worker on LAN A serves a seeker on
LAN B across a router, and the text equals the same generation over loopback. Skips where namespaces cannot
be made (not root, no iproute2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gtracd.daemon.lifeline import child_env
from gtracd.harness.launch import start_procs, start_workers, status_of, stop_all, worker_env
from gtracd.harness.netns import Topology, unavailable

from .waiting import wait_until

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(300)]
WHY = unavailable()
pytest.importorskip("torch")


def _generate(folder, peers: list[str], wrap=lambda argv: argv) -> list[int]:
    argv = [sys.executable, "-m", "gtracd.cli", "--role", "seeker", "--ephemeral", "--name", "s", "generate",
            "--prompt", "abc", "--model", str(folder), "--max-new-tokens", "12", "--json", "--quiet",
            *[x for p in peers for x in ("--peer", p)]]
    out = subprocess.run(wrap(argv), capture_output=True, text=True, timeout=120, env=child_env(worker_env()))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.splitlines()[-1])["tokens"]


@pytest.mark.skipif(WHY is not None, reason=f"{WHY}")
def test_lans_reach_each_other_only_through_a_forwarding_router():
    code = "import socket, sys; s = socket.socket(); s.settimeout(1.5); print(s.connect_ex((sys.argv[1], 9)))"
    refused, unreachable = "111", "11"  # a host that answers (port closed), a timeout
    for forward in (True, False):
        with Topology({"a": ("router", ["w"]), "b": ("router", ["s"])}, forward=forward) as t:
            def probe(host):
                return subprocess.run(t.cmd(host, [sys.executable, "-c", code, t.ip("w")]), capture_output=True,
                                      text=True, timeout=30).stdout.strip()

            assert probe("router") == refused  # the router sits on both LANs (where a relay runs)
            assert probe("s") == (refused if forward else unreachable)
            names = [t.ns(n) for n in ("router", "w", "s")]
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert not any(n in listed for n in names)  # every namespace it made is gone


@pytest.mark.skipif(WHY is not None, reason=f"{WHY}")
def test_a_seeker_on_one_lan_generates_through_workers_on_another(tmp_path):
    from .models import char_tokenizer, tiny_llama

    folder = tiny_llama(tmp_path / "m", layers=4)
    char_tokenizer(folder)
    ranges = [(0, 2), (2, 4)]

    def worker(i, a, b, listen):
        return (["--role", "worker", "--layers", f"{a}:{b}", "--model", str(folder), "--ephemeral", "--name", f"w{i}",
                 "--drain-s", "1", "--listen", listen], f"w{i}")

    ws = start_procs([worker(i, a, b, "/ip4/127.0.0.1/tcp/0") for i, (a, b) in enumerate(ranges)], 120, tmp_path)
    try:
        ref = _generate(folder, [w.addr for w in ws])
    finally:
        stop_all(ws)
    with Topology({"a": ("router", ["w0", "w1"]), "b": ("router", ["s"])}, forward=True, rate_mbit=10) as t:
        ws = start_procs([worker(i, a, b, f"/ip4/{t.ip(f'w{i}')}/tcp/0") for i, (a, b) in enumerate(ranges)], 120,
                         tmp_path, wrap=lambda name, argv: t.cmd(name, argv))
        try:
            assert all(f"/ip4/{t.ip(f'w{i}')}/" in w.addr for i, w in enumerate(ws))  # not loopback
            # the router forwards between the LANs, links capped at 10 Mbit/s: the same text as over loopback
            assert _generate(folder, [w.addr for w in ws], lambda argv: t.cmd("s", argv)) == ref
        finally:
            stop_all(ws)


def _anchor_and_workers(t: Topology, folder, ranges, tmp_path, network: str, relay_via: bool = True):
    """An anchor on the router (relay for both LANs) and workers on LAN A that bootstrap to it and, with
    `relay_via`, reserve a slot on it. Returns (anchor, workers, anchor's LAN B address)."""
    anchor = start_procs([(["--role", "anchor", "--ephemeral", "--name", "r", "--network", network,
                            "--listen", "/ip4/0.0.0.0/tcp/0", "--data-dir", str(tmp_path / "r")], "r")],
                         60, tmp_path, wrap=lambda name, argv: t.cmd("router", argv))[0]
    on = {lan: next(a for a in anchor.info["addrs"] if f"/ip4/{t.ip('router', lan)}/" in a) for lan in ("a", "b")}
    try:
        ws = start_procs([(["--role", "worker", "--layers", f"{a}:{b}", "--model", str(folder), "--ephemeral",
                            "--name", f"w{i}", "--drain-s", "1", "--network", network, "--heartbeat-s", "1",
                            "--listen", "/ip4/0.0.0.0/tcp/0", "--bootstrap", on["a"],
                            "--data-dir", str(tmp_path / f"w{i}"),
                            *(["--relay-via", on["a"]] if relay_via else [])], f"w{i}")
                          for i, (a, b) in enumerate(ranges)], 120, tmp_path,
                         wrap=lambda name, argv: t.cmd(name, argv))
        if relay_via:  # a worker's first heartbeat makes it a member; its reservation follows within seconds
            wait_until(lambda: all(status_of(tmp_path / f"w{i}").get("relay", {}).get("circuits")
                                   for i in range(len(ranges))), 60, "the workers' relay reservations")
    except BaseException:
        stop_all([anchor])
        raise
    return anchor, ws, on["b"]


def _seek(t: Topology, folder, network: str, boot: str, tmp_path, tokens: int = 12) -> dict:
    argv = [sys.executable, "-m", "gtracd.cli", "--role", "seeker", "--ephemeral", "--name", "s", "--network",
            network, "--bootstrap", boot, "--data-dir", str(tmp_path / "s"),
            "generate", "--node-timeout-s", "6", "--prompt", "abc", "--model", str(folder), "--max-new-tokens",
            str(tokens), "--json", "--quiet"]
    out = subprocess.run(t.cmd("s", argv), capture_output=True, text=True, timeout=150, env=child_env(worker_env()))
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(WHY is not None, reason=f"{WHY}")
def test_a_seeker_reaches_workers_only_through_a_relay(tmp_path):
    """No forwarding between the LANs: the workers on LAN A reserve a slot on the anchor (the router, a relay),
    announce circuit addresses in their heartbeats, and the seeker on LAN B generates through the relay the
    text of the loopback run."""
    from .models import char_tokenizer, tiny_llama

    folder = char_tokenizer(tiny_llama(tmp_path / "m", layers=4))
    ranges = [(0, 2), (2, 4)]
    ws = start_workers(str(folder), ranges)
    try:
        ref = _generate(folder, [w.addr for w in ws])
    finally:
        stop_all(ws)
    with Topology({"a": ("router", ["w0", "w1"]), "b": ("router", ["s"])}, forward=False, rate_mbit=10) as t:
        anchor, ws, boot = _anchor_and_workers(t, folder, ranges, tmp_path, "t-relay")
        try:
            out = _seek(t, folder, "t-relay", boot, tmp_path)
            assert out["tokens"] == ref
            assert len(out["chain"]) == 2
        finally:
            stop_all(ws)
            stop_all([anchor])


@pytest.mark.skipif(WHY is not None, reason=f"{WHY}")
def test_mdns_finds_the_network_with_no_bootstrap(tmp_path):
    """One LAN, no --bootstrap anywhere: an anchor, two workers and a seeker find each other by mDNS (scoped to
    their network: a daemon of another network on the same LAN is not found) and the seeker generates."""
    from .models import char_tokenizer, tiny_llama

    folder = char_tokenizer(tiny_llama(tmp_path / "m", layers=4))
    with Topology({"a": ("router", ["an", "w0", "w1", "s", "x"])}) as t:
        common = ["--ephemeral", "--listen", "/ip4/0.0.0.0/tcp/0", "--discover", "mdns"]
        procs = start_procs(
            [(["--role", "anchor", "--name", "an", "--network", "t-lan", "--data-dir", str(tmp_path / "an"), *common],
              "an"),
             (["--role", "anchor", "--name", "x", "--network", "t-other", "--data-dir", str(tmp_path / "x"), *common],
              "x")]
            + [(["--role", "worker", "--layers", f"{a}:{b}", "--model", str(folder), "--name", f"w{i}", "--drain-s",
                 "1", "--network", "t-lan", "--heartbeat-s", "1", "--data-dir", str(tmp_path / f"w{i}"), *common],
                f"w{i}") for i, (a, b) in enumerate([(0, 2), (2, 4)])],
            120, tmp_path, wrap=lambda name, argv: t.cmd(name, argv))
        try:
            wait_until(lambda: status_of(tmp_path / "an").get("mdns", {}).get("found", 0) >= 2, 30,
                       "the anchor to find the workers")
            argv = [sys.executable, "-m", "gtracd.cli", "--role", "seeker", "--ephemeral", "--name", "s",
                    "--network", "t-lan", "--discover", "mdns", "--listen", "/ip4/0.0.0.0/tcp/0", "--data-dir",
                    str(tmp_path / "s"), "generate", "--node-timeout-s", "6", "--prompt", "abc", "--model",
                    str(folder), "--max-new-tokens", "6", "--json", "--quiet"]
            out = subprocess.run(t.cmd("s", argv), capture_output=True, text=True, timeout=120,
                                 env=child_env(worker_env()))
            assert out.returncode == 0, out.stderr[-3000:]
            assert len(json.loads(out.stdout.splitlines()[-1])["tokens"]) == 6
            assert status_of(tmp_path / "x").get("mdns", {}).get("found") == 0  # another network: never found
        finally:
            stop_all(procs)
