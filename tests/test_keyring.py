"""Keyring updates (gtracd.keyring): a quorum of current anchors changes the keyring, in serial order, once;
everything else is refused with its reason. And the `gtracd keys` flow: propose, sign on another anchor's
device, apply at quorum; a revoked key is never trusted again."""

from __future__ import annotations

import json
import time

import pytest

from gtracd.cli.main import main
from gtracd.identity import Identity, Keystore
from gtracd.keyring.update import Keyring, Refused, apply, decode, propose, sign

A, B, C, D = (Identity(bytes([i]) * 32) for i in range(1, 5))
NET = "n"


def ring(*ids: Identity, **kw) -> Keyring:
    return Keyring({i.peer_id: i.public for i in ids}, **kw)


def test_a_majority_revokes_a_leaked_key_and_the_leaked_key_alone_cannot():
    kr = ring(A, B, C)
    u = propose(kr, NET, 1000.0, revoke=[(C.peer_id, 900.0)])
    with pytest.raises(Refused) as e:
        apply(kr, u, [sign(u, A)], NET)
    assert e.value.reason == "quorum"
    new = apply(kr, u, [sign(u, A), sign(u, B)], NET)
    assert set(new.anchors) == {A.peer_id, B.peer_id} and new.revoked == {C.peer_id: 900.0} and new.serial == 1
    # the leaked key, with one honest signature replayed from elsewhere, cannot revoke an honest one
    evil = propose(kr, NET, 1000.0, revoke=[(A.peer_id, 0.0)])
    with pytest.raises(Refused):
        apply(kr, evil, [sign(evil, C), sign(u, B)], NET)  # B's signature is on another update


def test_signatures_of_keys_outside_the_keyring_or_repeated_do_not_count():
    kr = ring(A, B, C)
    u = propose(kr, NET, 1.0, add=[D.public])
    for sigs in ([sign(u, A), sign(u, A)], [sign(u, A), sign(u, D)], [sign(u, A), {**sign(u, B), "key": C.public}]):
        with pytest.raises(Refused) as e:
            apply(kr, u, sigs, NET)
        assert e.value.reason == "quorum"


def test_updates_apply_in_serial_order_once_and_for_one_network():
    kr = ring(A, B, C)
    u1 = propose(kr, NET, 1.0, add=[D.public])
    kr1 = apply(kr, u1, [sign(u1, A), sign(u1, B)], NET)
    u2 = propose(kr1, NET, 2.0, remove=[D.peer_id])
    with pytest.raises(Refused) as e:
        apply(kr, u2, [sign(u2, A), sign(u2, B)], NET)  # skips serial 1
    assert e.value.reason == "gap"
    with pytest.raises(Refused) as e:
        apply(kr1, u1, [sign(u1, A), sign(u1, B)], NET)
    assert e.value.reason == "stale"
    with pytest.raises(Refused) as e:
        apply(kr, u1, [sign(u1, A), sign(u1, B)], "another")
    assert e.value.reason == "wrong_network"
    assert apply(kr1, u2, [sign(u2, A), sign(u2, B), sign(u2, D)], NET).anchors == ring(A, B, C).anchors


def test_tampering_breaks_every_signature():
    kr = ring(A, B, C)
    u = propose(kr, NET, 1.0, revoke=[(C.peer_id, 5.0)])
    sigs = [sign(u, A), sign(u, B)]
    forged = decode(u.raw.replace(C.peer_id.encode(), B.peer_id.encode()))
    with pytest.raises(Refused):
        apply(kr, forged, sigs, NET)


def test_a_revoked_key_never_comes_back_and_the_keyring_never_empties():
    kr = apply(ring(A, B, C), u := propose(ring(A, B, C), NET, 1.0, revoke=[(C.peer_id, 0.0)]),
               [sign(u, A), sign(u, B)], NET)
    back = propose(kr, NET, 2.0, add=[C.public])
    with pytest.raises(Refused) as e:
        apply(kr, back, [sign(back, A), sign(back, B)], NET)
    assert e.value.reason == "revoked"
    solo = ring(A)
    last = propose(solo, NET, 1.0, remove=[A.peer_id])
    with pytest.raises(Refused) as e:
        apply(solo, last, [sign(last, A)], NET)
    assert e.value.reason == "empty"
    assert ring(A, B, C, D).quorum() == 3 and ring(A, B, C).quorum(1) == 1


def _keystores(tmp_path, n: int = 3) -> list[Keystore]:
    """n anchor operators' devices, each with its own key and the same keyring."""
    ids = [Identity(bytes([10 + i]) * 32) for i in range(n)]
    stores = []
    for i in range(n):
        ks = Keystore(tmp_path / f"dev{i}")
        ks._ensure()
        ks._store("anchor", ids[i], None)
        for j in ids:
            ks.trust_anchor(j.public.hex())
        stores.append(ks)
    return stores


def test_the_keys_commands_revoke_with_two_operators_and_refuse_what_is_off(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ks = _keystores(tmp_path)
    leaked = Identity(bytes([12]) * 32).peer_id
    upd = str(tmp_path / "u.json")
    assert main(["--keystore", str(ks[0].root), "keys", "revoke-anchor", leaked, "--network", NET, "-o", upd]) == 0
    assert "1 of 2 signatures" in capsys.readouterr().out
    assert Keystore(ks[0].root).revoked() == {}  # not applied without the quorum
    # a second operator signs on its own device: the quorum is there, applied on that device
    assert main(["--keystore", str(ks[1].root), "keys", "sign-update", upd, "--network", NET]) == 0
    assert "applied here" in capsys.readouterr().out
    assert leaked in Keystore(ks[1].root).revoked() and leaked not in Keystore(ks[1].root).anchors()
    assert main(["--keystore", str(ks[0].root), "keys", "apply-update", upd, "--network", NET]) == 0
    assert set(Keystore(ks[0].root).anchors()) == set(Keystore(ks[1].root).anchors())
    # refusals: trusting the revoked key again, applying twice, a tampered file, another network
    assert main(["--keystore", str(ks[0].root), "keys", "trust-anchor", Identity(bytes([12]) * 32).public.hex()]) == 2
    assert "revoked" in capsys.readouterr().err
    assert main(["--keystore", str(ks[0].root), "keys", "apply-update", upd, "--network", NET]) == 2
    assert "not newer" in capsys.readouterr().err
    doc = json.loads(open(upd).read())
    doc["sigs"][0]["sig"] = "00" * 64
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["--keystore", str(ks[2].root), "keys", "apply-update", str(bad), "--network", NET]) == 0
    assert "1 of 2 signatures" in capsys.readouterr().out and Keystore(ks[2].root).revoked() == {}
    assert main(["--keystore", str(ks[2].root), "keys", "apply-update", upd, "--network", "other"]) == 2
    assert "network" in capsys.readouterr().err
    assert main(["--keystore", str(ks[2].root), "keys", "keyring", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["serial"] == 0
    assert time.time() - Keystore(ks[1].root).revoked()[leaked] < 60


def test_two_updates_signed_for_one_serial_are_a_fork():
    kr = ring(A, B, C)
    one = propose(kr, NET, 1.0, add=[D.public])
    other = propose(kr, NET, 2.0, remove=[C.peer_id])  # the same serial, another change
    kr1 = apply(kr, one, [sign(one, A), sign(one, B)], NET)
    with pytest.raises(Refused) as e:
        apply(kr1, other, [sign(other, A), sign(other, C)], NET)
    assert e.value.reason == "stale"  # the keeper reports it as a conflict: it differs from what was applied
    after_other = apply(kr, other, [sign(other, A), sign(other, C)], NET)  # a device that applied `other`...
    two = propose(kr1, NET, 3.0, add=[Identity(bytes([9]) * 32).public])
    with pytest.raises(Refused) as e:  # ...cannot take the update that follows `one`: the chains differ
        apply(after_other, two, [sign(two, A), sign(two, B)], NET)
    assert e.value.reason == "fork"


def test_a_retired_anchor_keeps_what_it_signed_before_and_may_come_back():
    from gtracd.ledger.signed import verified_reports
    from gtracd.wire.envelope import Signer

    kr = ring(A, B, C)
    u = propose(kr, NET, 1000.0, remove=[C.peer_id])
    kr1 = apply(kr, u, [sign(u, A), sign(u, B)], NET)
    assert kr1.retired == {C.peer_id: 1000.0} and kr1.former() == {C.peer_id: 1000.0} and not kr1.revoked
    before = Signer(C, clock=lambda: 900.0).sign("ledger_epoch", {"network": NET, "epoch": 1, "priors": {}}).raw
    after = Signer(C, clock=lambda: 1100.0).sign("ledger_epoch", {"network": NET, "epoch": 2, "priors": {}}).raw
    good, bad = verified_reports([before, after], NET, set(kr1.anchors), revoked=kr1.former())
    assert [r.epoch for r in good] == [1] and bad == 1
    back = propose(kr1, NET, 2000.0, add=[C.public])
    assert C.peer_id in apply(kr1, back, [sign(back, A), sign(back, B)], NET).anchors


def test_purging_a_revoked_keys_late_epochs_leaves_the_ledger_as_if_they_never_came():
    from gtracd.ledger import Ledger, Report
    from gtracd.ledger.signed import revoked_after
    from gtracd.wire.envelope import Signer, decode_envelope

    def rec(who, ts, n):
        return Report.from_envelope(decode_envelope(Signer(who, clock=lambda: ts).sign(
            "ledger_epoch", {"network": NET, "epoch": n, "priors": {}}).raw))

    keep = [rec(A, 10.0, 1), rec(C, 50.0, 2), rec(B, 70.0, 3)]
    late = [rec(C, 100.0, 4), rec(C, 120.0, 5)]
    full, clean = Ledger(keep + late), Ledger(keep)
    gone = full.discard(lambda r: revoked_after(r, {C.peer_id: 100.0}))
    assert [r.epoch for r in gone] == [4, 5]
    assert full == clean and full.heads() == clean.heads() and len(full) == 3 and full.rewrites == 1


async def test_after_a_revocation_the_adopted_checkpoint_is_certified_again_without_the_revoked_key():
    """Its proof leaned on the revoked key: new replicas could not adopt it (and the reports it folded are
    gone). The remaining anchors sign it again; the proof is replaced once they make a quorum."""
    from gtracd.control.replica import Checkpointer, Replica
    from gtracd.ledger import RuleParams
    from gtracd.ledger.checkpoint import signed_body, verify_proof
    from gtracd.ledger.crdt import make_checkpoint
    from gtracd.wire.envelope import Signer, decode_envelope

    from .test_ledger_sync import REPORTERS, rep

    replica = Replica(None, RuleParams())
    for s in range(20):
        replica.ledger.add(rep(REPORTERS[0], s))
    published = []

    async def publish(topic, raw):
        published.append(raw)

    mine = Checkpointer(replica, {A.peer_id, B.peer_id, C.peer_id}, NET, publish, Signer(A))
    cp = make_checkpoint(None, replica.ledger, 15.0, RuleParams())

    def sig(who):
        return decode_envelope(Signer(who).sign("ledger_checkpoint", signed_body(cp, NET)).raw)

    for who in (A, C):
        await mine.on_signature(sig(who))
    assert replica.ledger.checkpoint == cp and mine.proof_signers() == {A.peer_id, C.peer_id}
    await mine.rekey({A.peer_id, B.peer_id})  # C revoked
    assert len(published) == 1 and decode_envelope(published[0]).sender_id == A.peer_id  # A signs it again
    assert verify_proof(cp.id, replica.proof, {A.peer_id, B.peer_id}, NET) is not None  # not yet
    await mine.on_signature(sig(B))
    assert verify_proof(cp.id, replica.proof, {A.peer_id, B.peer_id}, NET) is None
    assert mine.proof_signers() == {A.peer_id, B.peer_id} and mine.counters["reproved"] == 1
