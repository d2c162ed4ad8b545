"""`gtracd doctor`: a healthy device passes every check (exit 0) against a real anchor; a broken one gets one
line per problem, saying what to fix (exit 1): a private key readable by others, an empty keyring, an
anchor that does not answer, a port already taken."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from gtracd.harness.controlnet import ControlNet

pytestmark = [pytest.mark.procs, pytest.mark.smoke, pytest.mark.timeout(90)]


def doctor(*args: str, home) -> tuple[int, dict]:
    out = subprocess.run([sys.executable, "-m", "gtracd.cli", "doctor", *args, "--json"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "GTRACD_HOME": str(home)})
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def failed(doc: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for c in doc["checks"]:
        if c["status"] == "fail":
            out.setdefault(c["check"], []).append(c["message"])
    return out


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    cn = ControlNet(root=tmp_path_factory.mktemp("doctor"), network="t-doctor")
    cn.start(["a1"])
    yield cn
    cn.stop_all()


def test_a_healthy_device_passes_and_a_broken_one_is_told_what_to_fix(net, tmp_path):
    flags = ["--keystore", str(net.keystore), "--network", net.network, "--bootstrap", net.anchor_addrs["a1"]]
    rc, doc = doctor("anchor", *flags, home=tmp_path)
    assert rc == 0 and doc["ok"], doc
    checks = {c["check"] for c in doc["checks"]}
    assert {"keys", "keyring", "ports", "disk", "anchors", "clock", "libp2p"} <= checks
    assert any(c["check"] == "clock" and c["status"] == "ok" for c in doc["checks"])

    # the anchor's own port, checked on its device while it runs: held by it, which is fine
    port = net.anchor_addrs["a1"].split("/")[4]
    rc, doc = doctor("anchor", *flags, "--data-dir", str(net.root), "--listen", f"/ip4/127.0.0.1/tcp/{port}",
                     home=tmp_path)
    assert rc == 0 and any("in use by the running gtracd anchor a1" in c["message"] for c in doc["checks"]), doc

    # a private key others can read
    key = net.keystore / "a1.key"
    key.chmod(0o644)
    try:
        rc, doc = doctor(*flags, home=tmp_path)
    finally:
        key.chmod(0o600)
    assert rc == 1 and any(f"chmod 600 {key}" in m for m in failed(doc)["keys"])

    # an empty keyring
    rc, doc = doctor("--keystore", str(tmp_path / "keys"), "--network", net.network, "--bootstrap",
                     net.anchor_addrs["a1"], home=tmp_path)
    assert rc == 1 and "trust-anchor" in failed(doc)["keyring"][0]
    assert any("not a keyring anchor" in c["message"] for c in doc["checks"])

    # an anchor of another network
    rc, doc = doctor("--keystore", str(net.keystore), "--network", "elsewhere", "--bootstrap", net.anchor_addrs["a1"],
                     home=tmp_path)
    assert rc == 1 and "same --network?" in failed(doc)["anchors"][0]

    # an anchor that is not there, and a metrics port someone holds
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        gone = net.anchor_addrs["a1"].replace(net.anchor_addrs["a1"].split("/")[4], str(port + 1 if port < 65535
                                                                                          else port - 1))
        rc, doc = doctor("--keystore", str(net.keystore), "--network", net.network, "--bootstrap", gone,
                         "--metrics", str(port), home=tmp_path)
    assert rc == 1
    f = failed(doc)
    assert "unreachable" in f["anchors"][0] and "is taken" in f["ports"][0]


def test_the_human_report_is_one_line_per_check(net, tmp_path):
    out = subprocess.run([sys.executable, "-m", "gtracd.cli", "doctor", "--offline", "--keystore",
                          str(net.keystore)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "GTRACD_HOME": str(tmp_path)})
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stdout + out.stderr
    assert all(line.split()[0] in ("ok", "warn", "FAIL") for line in lines[:-1]) and "passed" in lines[-1]
