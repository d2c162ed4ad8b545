"""Checkpoints between real processes: three anchors fold old reports into checkpoints they sign, adopt one
once a quorum signed the same state, prune and compact their logs; a seeker adopts it too; every replica
derives the same trust; a fresh seeker bootstraps from the checkpoint plus what came after it; an anchor
killed with -9 and restarted loads the checkpoint and the compacted log."""

from __future__ import annotations

import time

import pytest

from gtracd.harness.controlnet import ControlNet
from gtracd.ledger import ReportLog
from gtracd.ledger.store import load_checkpoint

from .waiting import until

pytestmark = [pytest.mark.procs, pytest.mark.timeout(120)]
RULES = ["--reporter-window-s", "2"]  # the rule settings every replica shares: reports older than 2 s fold


def _cp(cn: ControlNet, name: str) -> dict | None:
    st = cn.status(name) or {}
    return st.get("checkpoint")


async def test_anchors_checkpoint_prune_and_every_replica_derives_the_same_trust(tmp_path):
    cn = ControlNet(root=tmp_path / "net", network="t-cp", heartbeat_s=1.0, sync_s=0.5, node_timeout_s=5.0,
                    anchor_extra=RULES + ["--checkpoint-s", "2"], seeker_extra=RULES)
    cn.start(["a1", "a2", "a3"], fleet=6, seekers={"busy": 20.0, "quiet": 0.0})
    names = ["a1", "a2", "a3", "quiet"]
    try:
        await until(lambda: all((_cp(cn, n) or {}).get("folded", 0) > 0 for n in names), 60,
                    "every replica to adopt a checkpoint that folded reports")
        for n in names:
            cp = _cp(cn, n)
            assert cp["signers"] >= 2  # a quorum of three keyring anchors
        cn.set_seeker_rate("busy", 0.0)  # quiet network: replicas converge

        def same():
            # a new checkpoint is cut every 2 s even with nothing new to fold (its digest chains the last), and
            # status files are up to a second old: replicas can show neighbouring boundaries. The same trust,
            # the same reports folded, and one digest per boundary shown.
            sts = [cn.status(n) or {} for n in names]
            trust = [s.get("trust") for s in sts]
            cps = [s.get("checkpoint") or {} for s in sts]
            per_boundary = {}
            for c in cps:
                per_boundary.setdefault(c.get("boundary"), set()).add(c.get("digest"))
            return (trust[0] and all(t == trust[0] for t in trust) and len({c.get("folded") for c in cps}) == 1
                    and all(len(d) == 1 for d in per_boundary.values()) and None not in per_boundary and sts)

        sts = await until(same, 60, "every replica to hold the same checkpoint and derive the same trust")
        folded = sts[0]["checkpoint"]["folded"]
        # compacted: the log keeps nothing its checkpoint folded (the checkpoint read first: a compaction in
        # between only removes more)
        cp, proof = load_checkpoint(cn.root / "anchor" / "a1" / "checkpoint.bin")
        on_disk = ReportLog(cn.root / "anchor" / "a1" / "ledger.log").load()
        assert cp.count >= folded > 0 and len(proof) >= 2 and not any(cp.covers(r) for r in on_disk)
        cn.start_seeker("late", 0.0)  # a fresh replica: bootstraps from the checkpoint over sync
        names.append("late")
        late = await until(lambda: same(), 30, "a fresh seeker to adopt the checkpoint and derive the same trust")
        # only what came after the checkpoint was fetched: as many reports as an anchor holds beside it
        assert late[-1]["ledger"]["reports"] == late[0]["ledger"]["reports"]
        assert late[-1]["checkpoint"]["folded"] > 0
        cn.kill9("a1")  # its last status file stays behind: only one written after the restart counts
        t_restart = time.time()
        cn.restart_anchor("a1")

        def restarted():
            st = cn.status("a1") or {}
            return st.get("written_at", 0) > t_restart and st.get("checkpoint") and st

        back = await until(restarted, 30, "the restarted anchor's status")
        assert back["checkpoint"]["folded"] >= folded and back["ledger"]["corrupt_on_disk"] == 0
        await until(lambda: same(), 30, "the restarted anchor to derive the same trust again")
    finally:
        cn.stop_all()
