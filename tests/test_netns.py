"""Hosts on one machine (issue 25, item 1): network namespaces as LANs; a worker on LAN A serves a seeker on
LAN B across a router, and the text equals the same generation over loopback. Skips where namespaces cannot
be made (not root, no iproute2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gtracd.daemon.lifeline import child_env
from gtracd.harness.launch import start_procs, stop_all, worker_env
from gtracd.harness.netns import Topology, unavailable

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
