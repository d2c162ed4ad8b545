"""`gtracd invite` (on an anchor's machine) and `gtracd join STRING` (on any device): one copy-paste string
instead of exporting, copying and trusting anchor keys and pasting multiaddrs (keyring/invite.py is the
format and its checks; anchor/invites.py counts redemptions)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import msgpack
import trio

from ..config import DEFAULT_CONFIG, Settings, load_settings
from ..daemon.statusfiles import collect
from ..errors import UserError
from ..identity import Identity, Keystore, peer_id_from_public, read_passphrase_file
from ..keyring.invite import InviteRefused, make_invite, parse_duration, read_invite
from ..net.addresses import LOOPBACK, scope
from ..net.framing import FramedStream
from ..net.host import dial, open_stream, running_host
from ..net.protocols import INVITE


def register(sub) -> None:
    i = sub.add_parser("invite", help="print a one-string invite to this anchor's network (on the anchor's machine)")
    i.add_argument("--key", default="anchor", help="the anchor's key in the keystore (default: anchor)")
    i.add_argument("--passphrase-file", help="passphrase of an encrypted key")
    i.add_argument("--expires", default="7d", help="lifetime: 7d, 12h, 30m or seconds (default 7d)")
    i.add_argument("--uses", type=int, default=0, help="devices that may join with it (default 0: any number; "
                                                        "N > 0 is counted by the anchor, which must be running)")
    i.add_argument("--addr", action="append", default=[], help="an address of this anchor to put in the invite "
                                                               "(default: what the running anchor announces)")
    i.add_argument("--network", help="network name (default: the running anchor's)")
    i.add_argument("--data-dir", help="where the running anchor keeps its state (default ~/.gtracd)")
    i.set_defaults(func=cmd_invite)
    j = sub.add_parser("join", help="join a network with an invite: trust its anchors, bootstrap to them")
    j.add_argument("invite", help="the gtracd-invite1:... string (or @FILE)")
    j.add_argument("--relay", action="store_true", help="this device cannot be dialled from outside (NAT, mobile "
                                                        "data): hold relay slots on the anchors")
    j.add_argument("--timeout", type=float, default=15.0, help="seconds to reach the anchor (invites with --uses)")
    j.set_defaults(func=cmd_join)


def _running_anchor(settings, peer_id: str) -> dict | None:
    for doc in collect(settings):
        if doc.get("role") == "anchor" and doc.get("peer_id") == peer_id and not doc.get("stale"):
            return doc
    return None


def cmd_invite(args: argparse.Namespace) -> int:
    s = load_settings(args.config, {"data_dir": args.data_dir, "keystore": args.keystore})
    ks = Keystore(s.keystore_path)
    ident = ks.load(args.key, read_passphrase_file(args.passphrase_file))
    doc = _running_anchor(s, ident.peer_id)
    if args.uses and doc is None:
        raise UserError(f"no running anchor with key {args.key!r} under {s.home}: an invite with --uses is counted "
                        "by the anchor that made it, so start it first (or give --data-dir)")
    addrs = list(args.addr) or [a.split("/p2p/", 1)[0] for a in (doc or {}).get("addrs", [])]
    if not addrs:
        raise UserError(f"no address for anchor {args.key!r}: start it (gtracd --role anchor --key {args.key} "
                        "--listen /ip4/0.0.0.0/tcp/4001) or give --addr /ip4/HOST/tcp/PORT")
    network = args.network or (doc or {}).get("network") or s.network
    anchors = [(ident.public, addrs)]
    others = (doc or {}).get("anchors", {})
    for pid, pub in ks.anchors().items():  # the keyring's other anchors, with what this anchor knows of them
        if pid != ident.peer_id:
            anchors.append((pub, [a.split("/p2p/", 1)[0] for a in others.get(pid, {}).get("addrs", [])
                                  if "/p2p-circuit" not in a]))
    text = make_invite(ident, network, anchors, time.time() + parse_duration(args.expires), args.uses)
    if all(scope(a) == LOOPBACK for a in addrs):
        print("gtracd invite: every address in it is loopback: only this machine can use it (start the anchor "
              "with --listen /ip4/0.0.0.0/tcp/4001, or give --addr)", file=sys.stderr)
    print(text)
    return 0


def _config_path(args: argparse.Namespace) -> Path:
    return Path(args.config) if args.config else Settings().home / DEFAULT_CONFIG


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a valid TOML basic string (\uXXXX escapes only below 0x20)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise UserError(f"cannot write {v!r} to a config file")


async def _redeem(text: str, inv, timeout: float) -> None:
    """Count this redemption at the issuing anchor (an invite with --uses); InviteRefused if it says no."""
    issuer = peer_id_from_public(inv.issuer)
    addrs = [a for a in inv.bootstrap() if a.endswith(f"/p2p/{issuer}")]
    errors = []
    async with running_host(Identity.generate()) as host:
        for a in addrs:
            try:
                lp = await dial(host, a, timeout)
                fs = FramedStream(await open_stream(host, lp, INVITE, timeout))
                await fs.write_raw(text.encode(), timeout)
                reply = msgpack.unpackb(await fs.read_raw(timeout, cap=4096), raw=False)
                await fs.close()
            except Exception as e:  # unreachable at this address, slow, reset: try the next
                errors.append(f"{a}: {type(e).__name__}")
                continue
            if not isinstance(reply, dict) or not reply.get("ok"):
                reason = reply.get("reason") if isinstance(reply, dict) else None
                raise InviteRefused(reason if reason in ("used_up", "expired", "foreign", "tampered") else "malformed",
                                    str(reply.get("message", "refused by the anchor") if isinstance(reply, dict)
                                        else "a malformed answer"))
            return
    raise UserError("cannot reach the anchor that made this invite to redeem it (it is counted there: --uses); "
                    f"nothing was changed. Tried: {'; '.join(errors) or 'no address'}")


def cmd_join(args: argparse.Namespace) -> int:
    text = args.invite
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text()
        except OSError as e:
            raise UserError(f"cannot read {text[1:]}: {e.strerror}") from None
    path = _config_path(args)
    try:
        current = tomllib.loads(path.read_text()) if path.exists() else {}
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read {path}: {e}") from None
    flat = {k: v for k, v in current.items() if not isinstance(v, dict)}
    for v in current.values():
        if isinstance(v, dict):
            flat.update(v)
    inv = read_invite(text, time.time(), flat.get("network"))
    ks = Keystore(args.keystore or load_settings(str(path) if path.exists() else None).keystore_path)
    revoked = set(ks.revoked())
    gone = [peer_id_from_public(pub) for pub, _ in inv.anchors if peer_id_from_public(pub) in revoked]
    if gone:
        raise UserError(f"the invite names anchor {gone[0]}, which this device's keyring revoked: nothing changed")
    flat.update(network=inv.network, bootstrap=list(dict.fromkeys([*flat.get("bootstrap", []), *inv.bootstrap()])))
    flat.setdefault("listen", "/ip4/0.0.0.0/tcp/0")  # joined a network across machines: reachable beyond loopback
    if args.relay:
        flat["relay_via"] = ["anchors"]
    text_out = "# written by gtracd join\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in flat.items())
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as check:  # what every daemon will read, checked
        check.write(text_out)  # before anything is counted or written
        check.flush()
        load_settings(check.name, env={})
    if inv.uses:
        trio.run(_redeem, text.strip(), inv, args.timeout)
    # checked and counted: the keyring first (a config pointing at untrusted anchors is useless), then the config
    for pub, _ in inv.anchors:
        ks.trust_anchor(pub.hex())
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text_out)
    tmp.replace(path)
    print(f"joined network {inv.network!r}: trusted {len(inv.anchors)} anchor(s) in {ks.anchors_dir}; wrote "
          f"{path} (bootstrap: {len(inv.bootstrap())} address(es)); next: gtracd --role worker|seeker ...")
    return 0
