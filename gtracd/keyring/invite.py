"""One-string invites (pure): what `gtracd invite` prints on an anchor and `gtracd join` checks on a device.

An invite names the network, its anchors (public key and addresses of each), an expiry, how many devices may
redeem it (0: any number until it expires) and a random id, and is signed by the issuing anchor, which must be
one of the anchors it names:

    gtracd-invite1:<base64url(msgpack {"b": body bytes, "s": ed25519 signature over DOMAIN + body})>

Refusals (`InviteRefused.reason`): malformed (not an invite, or over MAX_TEXT), tampered (the signature does
not hold), foreign (signed by a key it does not name as an anchor, or for another network than the device's),
expired, used_up (the issuing anchor has seen `uses` redemptions; `Redemptions` is its ledger of them).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass

import msgpack

from ..errors import UserError
from ..identity import peer_id_from_public, verify

PREFIX = "gtracd-invite1:"
DOMAIN = b"gtracd invite v1\x00"
MAX_TEXT = 8192  # characters of one invite string
MAX_ANCHORS = 16
MAX_ADDRS = 8  # per anchor
REASONS = ("malformed", "tampered", "foreign", "expired", "used_up")


def _address_ok(a) -> bool:
    """A TCP multiaddr a config file can hold: printable ASCII, /ip4|/ip6|/dns..., bounded."""
    return (isinstance(a, str) and 0 < len(a) <= 256 and a.isascii() and a.isprintable()
            and a.split("/")[1:2] in (["ip4"], ["ip6"], ["dns"], ["dns4"], ["dns6"]) and '"' not in a
            and "\\" not in a)


class InviteRefused(UserError):
    def __init__(self, reason: str, message: str):
        assert reason in REASONS
        self.reason = reason
        super().__init__(f"invite refused ({reason}): {message}")


@dataclass(frozen=True)
class Invite:
    network: str
    anchors: tuple[tuple[bytes, tuple[str, ...]], ...]  # (public key, addresses) per anchor
    issuer: bytes  # public key of the anchor that signed it
    expires: float  # unix time
    uses: int  # 0: unlimited until it expires
    id: str  # 32 hex

    @property
    def issuer_id(self) -> str:
        return peer_id_from_public(self.issuer)

    def bootstrap(self) -> list[str]:
        """Every anchor address, each ending in its anchor's /p2p/ id."""
        out = []
        for pub, addrs in self.anchors:
            pid = peer_id_from_public(pub)
            out += [a if a.endswith(f"/p2p/{pid}") else f"{a}/p2p/{pid}" for a in addrs]
        return out


def make_invite(ident, network: str, anchors: list[tuple[bytes, list[str]]], expires: float, uses: int = 0,
                invite_id: str | None = None) -> str:
    """The invite string, signed by `ident` (an anchor: it is added to `anchors` if missing)."""
    if uses < 0:
        raise UserError("--uses must be >= 0 (0: any number)")
    if not any(pub == ident.public for pub, _ in anchors):
        anchors = [(ident.public, []), *anchors]
    if len(anchors) > MAX_ANCHORS or any(len(a) > MAX_ADDRS for _, a in anchors):
        raise UserError(f"an invite names at most {MAX_ANCHORS} anchors of {MAX_ADDRS} addresses each")
    bad = [a for _, addrs in anchors for a in addrs if not _address_ok(a)]
    if bad:
        raise UserError(f"not an address an invite can carry: {bad[0]!r} (e.g. /ip4/192.168.1.5/tcp/4001)")
    body = msgpack.packb({"v": 1, "network": network, "anchors": [[pub, list(addrs)] for pub, addrs in anchors],
                          "issuer": ident.public, "expires": float(expires), "uses": int(uses),
                          "id": invite_id or os.urandom(16).hex()}, use_bin_type=True)
    raw = msgpack.packb({"b": body, "s": ident.sign(DOMAIN + body)}, use_bin_type=True)
    text = PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if len(text) > MAX_TEXT:
        raise UserError("the invite would be too long: name fewer anchors or addresses")
    return text


def read_invite(text: str, now: float, network: str | None = None) -> Invite:
    """Check an invite string: well formed, signed by an anchor it names, not expired, and for `network` if the
    device already belongs to one. Raises InviteRefused; changes nothing."""
    text = text.strip()
    if len(text) > MAX_TEXT or not text.startswith(PREFIX):
        raise InviteRefused("malformed", f"an invite starts with {PREFIX!r} and is at most {MAX_TEXT} characters")
    try:
        b64 = text[len(PREFIX):]
        raw = base64.urlsafe_b64decode(b64 + "=" * (-len(b64) % 4))
        outer = msgpack.unpackb(raw, raw=False, strict_map_key=True, max_bin_len=MAX_TEXT, max_str_len=MAX_TEXT)
        body, sig = outer["b"], outer["s"]
        d = msgpack.unpackb(body, raw=False, max_bin_len=MAX_TEXT, max_str_len=MAX_TEXT)
        if d.get("v") != 1 or not isinstance(body, bytes) or not isinstance(sig, bytes):
            raise ValueError("version")
        anchors = d["anchors"]
        if not (isinstance(anchors, list) and 0 < len(anchors) <= MAX_ANCHORS
                and all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], bytes) and len(x[0]) == 32
                        and isinstance(x[1], list) and len(x[1]) <= MAX_ADDRS
                        and all(_address_ok(a) for a in x[1]) for x in anchors)):
            raise ValueError("anchors")
        inv = Invite(network=d["network"], issuer=d["issuer"], expires=float(d["expires"]), uses=int(d["uses"]),
                     id=d["id"], anchors=tuple((p, tuple(a)) for p, a in anchors))
        if not (isinstance(inv.network, str) and 0 < len(inv.network) <= 64 and inv.network.isprintable()
                and isinstance(inv.id, str) and isinstance(inv.issuer, bytes) and len(inv.issuer) == 32
                and inv.uses >= 0):
            raise ValueError("fields")
    except (binascii.Error, ValueError, TypeError, KeyError, OverflowError, msgpack.UnpackException) as e:
        raise InviteRefused("malformed", f"not a readable invite ({type(e).__name__})") from None
    if not verify(inv.issuer, sig, DOMAIN + body):
        raise InviteRefused("tampered", "its signature does not match its contents")
    if not any(p == inv.issuer for p, _ in inv.anchors):
        raise InviteRefused("foreign", f"signed by {inv.issuer_id}, which is not one of the anchors it names")
    if network is not None and network != inv.network:
        raise InviteRefused("foreign", f"it is for network {inv.network!r}; this device belongs to {network!r} "
                                       "(join with another --data-dir to hold a second network)")
    if now >= inv.expires:
        raise InviteRefused("expired", f"it expired {now - inv.expires:.0f} s ago; ask the anchor for a new one")
    return inv


class Redemptions:
    """The issuing anchor's count of redemptions per invite id (pure; the anchor persists `state`). Only its
    own signed invites reach it, so what it holds grows with the invites its operator made; expired ones are
    forgotten."""

    def __init__(self, state: dict | None = None):
        self.state: dict[str, list] = dict(state or {})  # invite id -> [uses so far, expires]

    def redeem(self, inv: Invite, now: float) -> None:
        """Count one redemption of `inv` (already read: signed by us, not expired) or refuse it as used up."""
        for k in [k for k, (_, exp) in self.state.items() if exp < now]:
            del self.state[k]
        used = self.state.get(inv.id, [0, inv.expires])[0]
        if inv.uses and used >= inv.uses:
            raise InviteRefused("used_up", f"all {inv.uses} of its uses are taken")
        self.state[inv.id] = [used + 1, inv.expires]


def parse_duration(text: str) -> float:
    """7d, 12h, 30m, 45s, or plain seconds -> seconds."""
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1}
    t = text.strip().lower()
    try:
        return float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        raise UserError(f"--expires {text!r}: use e.g. 7d, 12h, 30m or seconds") from None
