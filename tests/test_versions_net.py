"""A mixed-version network (docs/upgrades.md): this release's anchor and worker next to a worker and a seeker
that write the next wire version (GTRACD_WIRE_PREVIEW=next: every body carries a field this release does
not know). Generation through the mixed chain gives the same text from either seeker, the anchor admits
both seekers' trust reports, and nothing is dropped as malformed or refused for its version."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("torch")

from gtracd.daemon.lifeline import child_env  # noqa: E402
from gtracd.harness.controlnet import ControlNet  # noqa: E402
from gtracd.harness.launch import start_procs, stop_all, worker_env  # noqa: E402

from .models import char_tokenizer, tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(180)]

NEXT = {**worker_env(), "GTRACD_WIRE_PREVIEW": "next"}


async def test_this_release_and_the_next_generate_together(tmp_path):
    folder = tiny_llama(tmp_path / "tiny", layers=6)
    char_tokenizer(folder)
    cn = ControlNet(root=tmp_path / "net", network="t-mixed", heartbeat_s=1.0, sync_s=1.0, node_timeout_s=5.0)
    cn.start(["a1"])
    common = ["--network", cn.network, "--bootstrap", ",".join(cn.anchor_addrs.values()), "--data-dir",
              str(cn.root), "--keystore", str(cn.keystore), "--heartbeat-s", "1"]

    def worker(i, a, b):
        return (["--role", "worker", "--layers", f"{a}:{b}", "--model", str(folder), "--ephemeral", "--name", f"w{i}",
                 "--drain-s", "1"] + common, f"w{i}")

    ws = start_procs([worker(0, 0, 3)], 120, cn.root, env=NEXT) + start_procs([worker(1, 3, 6)], 120, cn.root)
    try:
        texts = {}
        for who, env in (("next", NEXT), ("this", worker_env())):
            out = subprocess.run(
                [sys.executable, "-m", "gtracd.cli", "--role", "seeker", "--name", f"s-{who}", "--key", f"s-{who}"]
                + common[:-2] + ["generate", "--prompt", "abc", "--model", str(folder), "--max-new-tokens", "10",
                                 "--json", "--quiet", "--node-timeout-s", "20"],
                capture_output=True, text=True, timeout=120, env=child_env(env))
            assert out.returncode == 0, out.stderr
            texts[who] = json.loads(out.stdout.splitlines()[-1])
        assert texts["next"]["tokens"] == texts["this"]["tokens"] and len(texts["this"]["tokens"]) == 10

        def anchor_has_both():
            st = cn.status("a1")
            return st if st and st["ledger"]["reports"] >= 2 else None

        st = await until(anchor_has_both, 30, "the anchor to admit both seekers' reports")
        assert not {"malformed", "wire_version", "unknown_kind", "bad_signature"} & set(st["dropped"]), st["dropped"]
        assert st["admission_dropped"] == {} or not any(st["admission_dropped"].values()), st["admission_dropped"]
    finally:
        stop_all(ws)
        cn.stop_all()
