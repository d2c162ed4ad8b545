"""`gtracd keys rotate-anchor | revoke-anchor | sign-update | apply-update | keyring`: changing the anchor
keyring with a quorum of the current anchors' signatures (gtracd.keyring). An update travels between anchor
operators as a small JSON file; once it carries a quorum it is applied to this device's keystore, the daemons
using that keystore apply it within seconds, and anchors gossip it to the network (control.keyring)."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from ..config import load_settings
from ..control.keyring import chain_entry, entry_parts
from ..errors import DecodeError, UserError
from ..identity import Keystore, parse_public, peer_id_from_public, read_passphrase_file
from ..keyring.update import Keyring, Refused, apply, decode, doc_of, from_doc, propose, sign, signers

FORMAT = "gtracd-keyring-update-1"


def _since(text: str | None) -> float:
    if text is None or text == "now":
        return time.time()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--since {text!r}: give now, seconds since the epoch, or an ISO time "
                        "(2026-12-01T09:00:00+00:00)") from None
    return (t if t.tzinfo else t.replace(tzinfo=datetime.UTC)).timestamp()


def _context(args) -> tuple[Keystore, Keyring, dict, str, int]:
    s = load_settings(getattr(args, "config", None), {"network": args.network} if args.network else None)
    if s.sources["network"] == "default" and args.keys_cmd != "keyring":
        raise UserError("which network's keyring? give --network NAME (or the daemon's --config FILE before "
                        "`keys`, or GTRACD_NETWORK): an update for another network is refused everywhere")
    ks = Keystore(args.keystore) if getattr(args, "keystore", None) else Keystore(s.keystore_path)
    doc = ks.keyring_doc()
    return ks, from_doc(doc, ks.anchors()), doc, s.network, s.keyring_quorum


def _peer(ks: Keystore, kr: Keyring, who: str) -> str:
    """A peer id from a peer id, a key name in this keystore, or a public key (file or hex)."""
    if who in kr.anchors or who in kr.revoked:
        return who
    if who in ks.names():
        return peer_id_from_public(ks.public(who))
    p = Path(who)
    return peer_id_from_public(parse_public(p.read_text() if p.is_file() else who, who)[1])


def _signer(ks: Keystore, kr: Keyring, args):
    ident = ks.load(args.key, read_passphrase_file(args.passphrase_file))
    if ident.peer_id not in kr.anchors:
        raise UserError(f"key {args.key!r} ({ident.peer_id}) is not an anchor of this keyring: only current "
                        "anchors sign keyring updates")
    return ident


def _write(path: Path, raw: bytes, sigs: list[dict]) -> None:
    u = decode(raw)
    doc = {"format": FORMAT, "serial": u.serial, "network": u.network,
           "summary": {"add": [peer_id_from_public(k) for k in u.add], "remove": list(u.remove),
                       "revoke": [{"peer": p, "since": t} for p, t in u.revoke]},
           **chain_entry(raw, sigs)}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def _read(path: str) -> tuple[bytes, list[dict]]:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UserError(f"{path} is not a keyring update (not JSON: {e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise UserError(f"{path} is not a keyring update ({FORMAT})")
    try:
        raw, sigs = entry_parts(doc)
        decode(raw)
    except (KeyError, TypeError, ValueError, DecodeError) as e:
        raise UserError(f"{path}: a damaged keyring update ({e})") from None
    return raw, sigs


def _finish(ks: Keystore, kr: Keyring, doc: dict, raw: bytes, sigs: list[dict], network: str, quorum: int,
            path: Path) -> int:
    """Apply if the quorum is there, else say who still has to sign."""
    u = decode(raw)
    have, need = len(signers(kr, u, sigs)), kr.quorum(quorum)
    if have < need:
        print(f"keyring update {u.serial}: {have} of {need} signatures. Next, on another anchor's device: "
              f"gtracd keys sign-update {path} --key ITS_KEY")
        return 0
    try:
        new = apply(kr, u, sigs, network, quorum)
    except Refused as e:
        raise UserError(str(e)) from None
    ks.write_keyring({p: k for p, k in new.anchors.items() if p not in kr.anchors}, set(kr.anchors) - set(new.anchors),
                     doc_of(new, [*doc["chain"], chain_entry(raw, sigs)]))
    print(f"keyring update {u.serial} applied here: {len(new.anchors)} anchors, {len(new.revoked)} revoked. "
          "Daemons using this keystore apply it within seconds, and anchors among them gossip it to the "
          f"network; on a device with another keystore and no daemon running: gtracd keys apply-update {path}")
    return 0


def cmd_change(args) -> int:
    """rotate-anchor / revoke-anchor: propose, sign with this anchor's key, write the update file."""
    ks, kr, doc, network, quorum = _context(args)
    if args.keys_cmd == "revoke-anchor":
        pid = _peer(ks, kr, args.peer)
        if pid not in kr.anchors:
            raise UserError(f"{pid} is not an anchor of this keyring" + (" (already revoked)" if pid in kr.revoked
                                                                         else ""))
        u = propose(kr, network, time.time(), revoke=[(pid, _since(args.since))], note=args.note or "")
    else:
        add = []
        for a in args.add:
            p = Path(a)
            add.append(parse_public(p.read_text() if p.is_file() else a, a)[1])
        remove = [_peer(ks, kr, r) for r in args.remove]
        if not add and not remove:
            raise UserError("rotate-anchor needs --add KEY and/or --remove PEER")
        u = propose(kr, network, time.time(), add=add, remove=remove, note=args.note or "")
    ident = _signer(ks, kr, args)
    path = Path(args.output or f"keyring-update-{u.serial}.json")
    sigs = [sign(u, ident)]
    _write(path, u.raw, sigs)
    print(f"wrote {path}: keyring update {u.serial}, signed by {args.key}")
    return _finish(ks, kr, doc, u.raw, sigs, network, quorum, path)


def cmd_sign(args) -> int:
    ks, kr, doc, network, quorum = _context(args)
    raw, sigs = _read(args.file)
    u = decode(raw)
    if u.network != network:
        raise UserError(f"{args.file} changes the keyring of network {u.network!r}, not {network!r} (--network)")
    if u.serial != kr.serial + 1:
        raise UserError(f"{args.file} is keyring update {u.serial}; this keystore is at {kr.serial}, so it takes "
                        f"{kr.serial + 1} next")
    ident = _signer(ks, kr, args)
    sigs = [s for s in sigs if bytes(s["key"]) != ident.public] + [sign(u, ident)]
    _write(Path(args.file), raw, sigs)
    print(f"signed {args.file} with {args.key}")
    return _finish(ks, kr, doc, raw, sigs, network, quorum, Path(args.file))


def cmd_apply(args) -> int:
    ks, kr, doc, network, quorum = _context(args)
    raw, sigs = _read(args.file)
    return _finish(ks, kr, doc, raw, sigs, network, quorum, Path(args.file))


def cmd_show(args) -> int:
    _, kr, _, network, quorum = _context(args)
    out = {"serial": kr.serial, "quorum": kr.quorum(quorum), "anchors": sorted(kr.anchors),
           "revoked": {p: t for p, t in sorted(kr.revoked.items())},
           "retired": {p: t for p, t in sorted(kr.retired.items())}}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"keyring serial {kr.serial}; updates need {out['quorum']} of {len(kr.anchors)} anchors' signatures")
    for p in out["anchors"]:
        print(f"anchor  {p}")
    for p, t in out["revoked"].items():
        print(f"revoked {p} since {datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()}")
    for p, t in out["retired"].items():
        print(f"retired {p} at {datetime.datetime.fromtimestamp(t, datetime.UTC).isoformat()}")
    return 0


def register(ksub) -> None:
    def common(p, sign_it: bool) -> None:
        p.add_argument("--network", help="the network whose keyring this is (default: the config's)")
        if sign_it:
            p.add_argument("--key", default="anchor", help="this anchor's key name in the keystore (default anchor)")
            p.add_argument("--passphrase-file", help="passphrase of an encrypted key")

    r = ksub.add_parser("revoke-anchor", help="propose revoking an anchor key (a leaked one), signed with yours")
    r.add_argument("peer", metavar="PEER_ID|NAME|PUBKEY")
    r.add_argument("--since", help="refuse what it signed from this time on: now (default), seconds since the "
                                   "epoch, or an ISO time (when the leak may have begun)")
    r.add_argument("--note", help="why (kept in the update)")
    r.add_argument("-o", "--output", help="the update file (default keyring-update-SERIAL.json)")
    common(r, True)
    r.set_defaults(func=cmd_change)
    a = ksub.add_parser("rotate-anchor", help="propose adding and/or removing anchor keys, signed with yours")
    a.add_argument("--add", action="append", default=[], metavar="FILE|PUBKEY", help="a new anchor's public key")
    a.add_argument("--remove", action="append", default=[], metavar="PEER_ID|NAME", help="an anchor to retire")
    a.add_argument("--note", help="why (kept in the update)")
    a.add_argument("-o", "--output", help="the update file (default keyring-update-SERIAL.json)")
    common(a, True)
    a.set_defaults(func=cmd_change)
    s = ksub.add_parser("sign-update", help="add this anchor's signature to a keyring update (applied at quorum)")
    s.add_argument("file")
    common(s, True)
    s.set_defaults(func=cmd_sign)
    p = ksub.add_parser("apply-update", help="apply a keyring update that carries a quorum to this keystore")
    p.add_argument("file")
    common(p, False)
    p.set_defaults(func=cmd_apply)
    k = ksub.add_parser("keyring", help="the keyring's serial, anchors and revoked keys")
    k.add_argument("--json", action="store_true")
    common(k, False)
    k.set_defaults(func=cmd_show)

