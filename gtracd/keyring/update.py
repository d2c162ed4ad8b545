"""Keyring updates (pure): the anchor keyring changes without a flag day.

An update says what changes (anchor keys added, removed, revoked with the time from which what they signed is
refused) and carries a serial one above the keyring it applies to and the hash of the update before it
(`prev`: every device holds the same chain of updates, whatever keyring it started from, so two different
updates with one serial are a fork, refused and reported). It takes effect only with the signatures of a
quorum of the *current* anchors (`keyring_quorum`, default a majority; a revoked or removed key never counts).
Updates apply in serial order, each once: one that skips ahead waits for the missing one (anchors gossip
their recent history again and again), one at or below the serial held is stale. A revoked key is never
trusted again, and an update may not leave the keyring empty. A removed (retired) anchor is no longer trusted
for anything new; what it signed before the update stays valid, as for a revoked key before `since`.

Wire form: the update is a msgpack map (the exact bytes are what is signed, after DOMAIN); a `keyring_update`
envelope carries those bytes and the signatures, and any peer may relay it: the quorum is what counts.
Revocation takes effect in three places (docs/operations.md): gossip and ledger streams from the key are
refused (it is no longer in the keyring), its checkpoint signatures no longer count, and ledger epoch records
it signed at or after `since` are dropped from every replica and refused from then on; what it signed before
stays only where a remaining anchor holds it (replicas accept it from keyring anchors, never from the key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from ..errors import DecodeError
from ..identity import Identity, peer_id_from_public, verify
from ..wire.codec import packb, unpackb
from ..wire.schema import F, check_map

DOMAIN = b"gtracd/keyring-update/1\x00"
MAX_BYTES = 16 * 1024
MAX_KEYS = 64
PUB = F("bin", minlen=32, maxlen=32)
PEER = F("str", minlen=1, maxlen=64)
SCHEMA = {
    "network": F("str", minlen=1, maxlen=64),
    "serial": F("int", lo=1, hi=2**31),
    "prev": F("bin", minlen=32, maxlen=32),  # sha256 of the previous update's bytes (zeros before the first)
    "ts": F("float", lo=0.0, hi=1e11),
    "add": F("list", maxlen=MAX_KEYS, item=PUB),
    "remove": F("list", maxlen=MAX_KEYS, item=PEER),
    "revoke": F("list", maxlen=MAX_KEYS, item=F("map", fields={"peer": PEER, "since": F("float", lo=0.0, hi=1e11)})),
    "note": F("str", maxlen=256, text=True, optional=True),
}
SIG_ITEM = F("map", fields={"key": PUB, "sig": F("bin", minlen=64, maxlen=64)})


class Refused(Exception):
    """An update this keyring does not take; `reason` is counted (stale, gap, quorum, ...)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


GENESIS = bytes(32)


def digest(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


@dataclass(frozen=True)
class Keyring:
    anchors: dict[str, bytes]  # peer id -> public key
    revoked: dict[str, float] = field(default_factory=dict)  # peer id -> since
    serial: int = 0
    last: bytes = GENESIS  # digest of the last update applied
    retired: dict[str, float] = field(default_factory=dict)  # removed anchors: peer id -> the update's time

    def quorum(self, setting: int = 0) -> int:
        """Signatures an update needs: `setting` (keyring_quorum) if given, else a majority of the anchors."""
        return setting if setting > 0 else len(self.anchors) // 2 + 1

    def former(self) -> dict[str, float]:
        """Former anchors -> the time from which what they sign is refused (revoked: since; retired: when)."""
        return {**self.retired, **self.revoked}


@dataclass(frozen=True)
class Update:
    raw: bytes  # the signed bytes
    network: str
    serial: int
    prev: bytes
    ts: float
    add: tuple[bytes, ...]
    remove: tuple[str, ...]
    revoke: tuple[tuple[str, float], ...]
    note: str = ""


def propose(kr: Keyring, network: str, ts: float, add=(), remove=(), revoke=(), note: str = "") -> Update:
    """The next update of `kr` (serial + 1); `revoke`: (peer id, since) pairs."""
    body = {"network": network, "serial": kr.serial + 1, "prev": kr.last, "ts": float(ts), "add": [bytes(k) for k in add],
            "remove": list(remove), "revoke": [{"peer": p, "since": float(t)} for p, t in revoke]}
    if note:
        body["note"] = note
    return decode(packb(check_map(SCHEMA, body)))


def decode(raw: bytes) -> Update:
    if len(raw) > MAX_BYTES:
        raise DecodeError(f"a keyring update of {len(raw)} bytes exceeds {MAX_BYTES}", "update")
    b = check_map(SCHEMA, unpackb(raw, MAX_BYTES), "update")
    return Update(bytes(raw), b["network"], b["serial"], bytes(b["prev"]), b["ts"], tuple(bytes(k) for k in b["add"]),
                  tuple(b["remove"]), tuple((r["peer"], r["since"]) for r in b["revoke"]), b.get("note", ""))


def sign(u: Update, ident: Identity) -> dict:
    return {"key": ident.public, "sig": ident.sign(DOMAIN + u.raw)}


def signers(kr: Keyring, u: Update, sigs: list[dict]) -> set[str]:
    """The current anchors whose signature on `u` verifies (each counted once)."""
    out = set()
    for s in sigs:
        pid = peer_id_from_public(bytes(s["key"]))
        if pid in kr.anchors and kr.anchors[pid] == bytes(s["key"]) and verify(bytes(s["key"]), bytes(s["sig"]),
                                                                                 DOMAIN + u.raw):
            out.add(pid)
    return out


def apply(kr: Keyring, u: Update, sigs: list[dict], network: str, quorum: int = 0) -> Keyring:
    """The keyring after `u`, or Refused."""
    if u.network != network:
        raise Refused("wrong_network", f"a keyring update of network {u.network!r}, not {network!r}")
    if u.serial <= kr.serial:
        raise Refused("stale", f"keyring update {u.serial} is not newer than the keyring's {kr.serial}")
    if u.serial > kr.serial + 1:
        raise Refused("gap", f"keyring update {u.serial} skips {kr.serial + 1}: it waits for the missing one")
    if u.prev != kr.last:
        raise Refused("fork", f"keyring update {u.serial} follows another update {u.serial - 1} than the one applied "
                              "here: two different updates were signed for one serial")
    need = kr.quorum(quorum)
    got = signers(kr, u, sigs)
    if len(got) < need:
        raise Refused("quorum", f"keyring update {u.serial} carries {len(got)} valid signature(s) of current "
                                f"anchors; {need} needed")
    anchors, revoked, retired = dict(kr.anchors), dict(kr.revoked), dict(kr.retired)
    for pub in u.add:
        pid = peer_id_from_public(pub)
        if pid in revoked:
            raise Refused("revoked", f"keyring update {u.serial} adds {pid}, which was revoked")
        anchors[pid] = pub
        retired.pop(pid, None)
    for pid in u.remove:
        if anchors.pop(pid, None) is not None:
            retired[pid] = u.ts
    for pid, since in u.revoke:
        anchors.pop(pid, None)
        retired.pop(pid, None)
        revoked[pid] = min(since, revoked.get(pid, since))
    if not anchors:
        raise Refused("empty", f"keyring update {u.serial} would leave no anchor")
    return Keyring(anchors, revoked, u.serial, digest(u.raw), retired)


def gossip_body(network: str, u: Update, sigs: list[dict]) -> dict:
    return {"network": network, "update": u.raw, "sigs": [{"key": bytes(s["key"]), "sig": bytes(s["sig"])}
                                                          for s in sigs]}


def from_doc(doc: dict, anchors: dict[str, bytes]) -> Keyring:
    """The keyring a keystore holds (identity.Keystore: anchors() and keyring_doc())."""
    chain = doc.get("chain") or []
    last = digest(bytes.fromhex(chain[-1]["update"])) if chain else GENESIS
    return Keyring(dict(anchors), {str(k): float(v) for k, v in doc.get("revoked", {}).items()},
                   int(doc.get("serial", 0)), last, {str(k): float(v) for k, v in doc.get("retired", {}).items()})


def doc_of(kr: Keyring, chain: list) -> dict:
    """What a keystore keeps of a keyring (identity.Keystore.write_keyring)."""
    return {"serial": kr.serial, "revoked": kr.revoked, "retired": kr.retired, "chain": chain}
