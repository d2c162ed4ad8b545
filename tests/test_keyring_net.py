"""An anchor key leaks, and two honest anchors revoke it (real anchor processes and a seeker with a keystore
of its own, which learns the revocation only by gossip). What the leaked key signed after the leak — a ledger
epoch that would reset a worker's trust — is dropped by every replica; what it signed before stays; its later
epochs, ledger deltas and checkpoint signatures are refused everywhere; and it cannot take the keyring
back."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
import trio

from gtracd.config import load_settings
from gtracd.daemon.node import running_node
from gtracd.harness.controlnet import ControlNet
from gtracd.harness.launch import start_procs, stop_all
from gtracd.identity import Identity, Keystore
from gtracd.keyring.update import from_doc, gossip_body, propose, sign
from gtracd.net.ledgersync import submit
from gtracd.wire.envelope import Signer

from .waiting import until

pytestmark = [pytest.mark.procs, pytest.mark.smoke, pytest.mark.timeout(180)]
NET = "t-revoke"
VICTIM = "12D3KooWVictimWorkerPeerIdForTheRevocationTest"


def epoch(signer: Signer, n: int) -> bytes:
    return signer.sign("ledger_epoch", {"network": NET, "epoch": n, "priors": {VICTIM: 0.0}}).raw


def keys(*args: str, keystore) -> str:
    out = subprocess.run([sys.executable, "-m", "gtracd.cli", "--keystore", str(keystore), "keys", *args,
                          "--network", NET], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_a_leaked_anchor_key_is_revoked_by_two_honest_anchors(tmp_path):
    cn = ControlNet(root=tmp_path / "net", network=NET, sync_s=1.0, node_timeout_s=5.0)
    cn.start(["a1", "a2", "a3"])
    ks = Keystore(cn.keystore)
    leaked = ks.load("a3")
    own = tmp_path / "seeker-keys"  # the seeker's device: its own keystore, the same three anchors trusted
    shutil.copytree(cn.keystore / "anchors", own / "anchors")
    seeker = start_procs([(["--role", "seeker", "--name", "s", "--keystore", str(own), "--network", NET,
                            "--data-dir", str(cn.root), "--bootstrap", ",".join(cn.anchor_addrs.values()),
                            "serve", "--sync-s", "1", "--node-timeout-s", "5"], "s")], 60, cn.root)
    replicas = ("a1", "a2", "s")
    try:
        leak = time.time()
        before = epoch(Signer(leaked, clock=lambda: leak - 30), 7)  # signed by a3 while it was honest
        after = epoch(Signer(leaked), 8)  # the attacker's, after the leak: every worker's trust reset
        s = load_settings(None, {"network": NET, "data_dir": str(tmp_path / "m"),
                                 "keystore": str(tmp_path / "mk"), "bootstrap": list(cn.anchor_addrs.values())},
                          env={})
        async with running_node("seeker", "operator", Identity.generate(), s, None, False) as node:
            lp = await node.links.connect(cn.procs["a1"].peer_id)
            ack = await submit(node.host, lp, NET, [before, after])
            assert ack["results"] == ["admitted", "admitted"]
            node.nursery.cancel_scope.cancel()

        def holding(n):
            return lambda: all((cn.status(r) or {}).get("ledger", {}).get("reports") == n for r in replicas)

        await until(holding(2), 30, "every replica to hold both epochs")
        cn.stop("a3")  # the attacker has the key now

        # two honest operators revoke it from the time of the leak (here they share one keystore)
        upd = tmp_path / "revoke.json"
        keys("revoke-anchor", "a3", "--key", "a1", "--since", str(leak), "-o", str(upd), keystore=cn.keystore)
        assert "applied here" in keys("sign-update", str(upd), "--key", "a2", keystore=cn.keystore)

        def revoked():
            sts = [cn.status(r) for r in replicas]
            return all(st and st["keyring"]["serial"] == 1 and leaked.peer_id in st["keyring"]["revoked"]
                       for st in sts)

        await until(revoked, 60, "every daemon to apply the revocation (the seeker by gossip)")
        await until(holding(1), 30, "the epoch signed after the leak to be dropped everywhere")
        assert leaked.peer_id in Keystore(own).revoked()  # written to the seeker's own keystore too
        assert leaked.peer_id not in Keystore(own).anchors()

        # the attacker goes on: a new epoch submitted, gossiped in a delta, and a checkpoint signature
        later = Signer(leaked)
        s2 = load_settings(None, {"network": NET, "data_dir": str(tmp_path / "x"), "keystore": str(tmp_path / "xk"),
                                  "bootstrap": [cn.anchor_addrs["a1"], cn.anchor_addrs["a2"]]}, env={})
        before_drops = {r: cn.status(r)["dropped"].get("untrusted_sender", 0) for r in replicas}
        async with running_node("anchor", "mallory", leaked, s2, None, False) as node:
            lp = await node.links.connect(cn.procs["a1"].peer_id)
            ack = await submit(node.host, lp, NET, [epoch(later, 9)])
            assert ack["results"] == ["not_anchor"], ack
            await until(lambda: node.gossip.peers("ledger") >= 2, 20, "the attacker to join the ledger topic")
            # nor can it revoke the honest anchors: it is not in the keyring any more
            kr = from_doc(ks.keyring_doc(), ks.anchors())  # the chain is public: it knows the serial and the hash
            grab = propose(kr, NET, time.time(), revoke=[(cn.procs["a1"].peer_id, 0.0)])

            async def attack_once():  # gossip is lossy: the attacker repeats itself until both anchors heard it
                await node.gossip.publish("ledger", later.sign("ledger_delta", {"network": NET,
                                                                              "reports": [epoch(later, 10)]}).raw)
                await node.gossip.publish("ledger", later.sign("ledger_checkpoint", {
                    "network": NET, "boundary": time.time() - 60, "digest": b"d" * 32, "state_hash": b"h" * 32,
                    "count": 0}).raw)
                await node.gossip.publish("ledger", later.sign("keyring_update",
                                                               gossip_body(NET, grab, [sign(grab, leaked)])).raw)

            def refused_everywhere():
                sts = [cn.status(r) for r in ("a1", "a2")]
                return all(st["dropped"].get("untrusted_sender", 0) > before_drops[r] and
                           st["keyring"]["refused"].get("quorum", 0) >= 1 for r, st in zip(("a1", "a2"), sts, strict=True))

            with trio.fail_after(40):
                while not refused_everywhere():
                    await attack_once()
                    await trio.sleep(1.0)
            node.nursery.cancel_scope.cancel()
        for r in replicas:
            st = cn.status(r)
            assert st["ledger"]["reports"] == 1, (r, st["ledger"])
            assert st["keyring"]["serial"] == 1 and st["keyring"]["anchors"] == 2
    finally:
        stop_all(seeker)
        cn.stop_all()
