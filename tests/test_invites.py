"""Invites (issue 25, item 5): `gtracd invite` on an anchor prints one string; `gtracd join STRING` verifies it,
trusts the anchors and writes the bootstrap configuration. Tampered, expired, foreign and used-up invites are
refused and change nothing."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtracd.errors import UserError
from gtracd.identity import Identity, Keystore
from gtracd.keyring.invite import PREFIX, InviteRefused, Redemptions, make_invite, read_invite

NOW = 1_800_000_000.0
A = Identity.generate()
B = Identity.generate()


def _invite(ident=A, network="home", uses=0, expires=NOW + 3600, anchors=None) -> str:
    return make_invite(ident, network, anchors or [(ident.public, ["/ip4/192.168.1.5/tcp/4001"])], expires, uses)


def _refused(text, reason, now=NOW, network=None):
    with pytest.raises(InviteRefused) as e:
        read_invite(text, now, network)
    assert e.value.reason == reason, e.value
    return e.value


def test_round_trip_names_the_network_anchors_and_addresses():
    text = make_invite(A, "home", [(A.public, ["/ip4/192.168.1.5/tcp/4001"]), (B.public, ["/ip4/10.0.0.2/tcp/9"])],
                       NOW + 60, 3)
    inv = read_invite(text, NOW, None)
    assert inv.network == "home" and inv.uses == 3 and inv.issuer == A.public
    assert inv.bootstrap() == [f"/ip4/192.168.1.5/tcp/4001/p2p/{A.peer_id}", f"/ip4/10.0.0.2/tcp/9/p2p/{B.peer_id}"]
    assert read_invite(text, NOW, "home").id == inv.id  # the device's own network: fine


def test_every_refusal():
    _refused("hello", "malformed")
    _refused(PREFIX + "!!!", "malformed")
    _refused(PREFIX + "A" * 9000, "malformed")
    _refused(_invite(expires=NOW - 1), "expired")
    _refused(_invite(network="home"), "foreign", network="office")
    # signed by a key it does not name as an anchor
    raw = msgpack.unpackb(base64.urlsafe_b64decode(_invite()[len(PREFIX):] + "=="), raw=False)
    body = msgpack.unpackb(raw["b"], raw=False)
    body["anchors"] = [[B.public, []]]
    b = msgpack.packb(body, use_bin_type=True)
    from gtracd.keyring.invite import DOMAIN

    forged = PREFIX + base64.urlsafe_b64encode(msgpack.packb({"b": b, "s": A.sign(DOMAIN + b)})).decode()
    _refused(forged, "foreign")
    # well signed but unreadable inside: a key that is no key, an address no config file can hold
    for anchors in ([[2**62, []]], [[A.public, ["/ip4/1.2.3.4/tcp/1\u2603"]]], [[A.public, ["not/an/address"]]]):
        body = msgpack.unpackb(raw["b"], raw=False)
        body["anchors"] = anchors
        b = msgpack.packb(body, use_bin_type=True)
        _refused(PREFIX + base64.urlsafe_b64encode(msgpack.packb({"b": b, "s": A.sign(DOMAIN + b)})).decode(),
                 "malformed")
    with pytest.raises(UserError):
        make_invite(A, "home", [(A.public, ["/ip4/1.2.3.4/tcp/1\u2603"])], NOW + 60)
    # one changed field: the signature no longer holds
    body = msgpack.unpackb(raw["b"], raw=False)
    body["expires"] = NOW + 10**9
    b = msgpack.packb(body, use_bin_type=True)
    _refused(PREFIX + base64.urlsafe_b64encode(msgpack.packb({"b": b, "s": raw["s"]})).decode(), "tampered")


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=len(PREFIX), max_value=400), st.integers(0, 255))
def test_any_flipped_character_is_refused_never_accepted_differently(pos, seed):
    text = _invite()
    pos = pos % len(text)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    c = alphabet[seed % len(alphabet)]
    if pos < len(PREFIX) or text[pos] == c:
        return
    bad = text[:pos] + c + text[pos + 1:]
    try:
        inv = read_invite(bad, NOW)
    except InviteRefused:
        return
    assert inv == read_invite(text, NOW)  # a base64 padding bit changed nothing that is read


def test_redemptions_count_uses_and_forget_expired_invites():
    r = Redemptions()
    inv = read_invite(_invite(uses=2), NOW)
    r.redeem(inv, NOW)
    r.redeem(inv, NOW)
    with pytest.raises(InviteRefused) as e:
        r.redeem(inv, NOW)
    assert e.value.reason == "used_up"
    unlimited = read_invite(_invite(uses=0), NOW)
    for _ in range(50):
        r.redeem(unlimited, NOW)
    r.redeem(read_invite(_invite(uses=1, expires=NOW + 10), NOW), NOW)
    assert len(r.state) == 3
    Redemptions(r.state).redeem(read_invite(_invite(uses=5, expires=NOW + 10**6), NOW + 100), NOW + 100)


def _gtracd(*argv, home, check=True, timeout=60):
    env = {**os.environ, "GTRACD_HOME": str(home)}
    env.pop("GTRACD_CONFIG", None)
    r = subprocess.run([sys.executable, "-m", "gtracd.cli", *argv], capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


@pytest.mark.procs
@pytest.mark.timeout(180)
def test_invite_join_round_trip_and_refusals_change_nothing(tmp_path):
    from gtracd.harness.controlnet import ControlNet

    cn = ControlNet(root=tmp_path / "net", network="t-invite")
    cn.start(["a1"])
    try:
        home = cn.root
        inv = _gtracd("--keystore", str(cn.keystore), "invite", "--key", "a1", "--data-dir", str(cn.root), "--uses",
                      "1", "--expires", "1h", home=home).stdout.strip()
        assert inv.startswith(PREFIX)
        dev1, dev2 = tmp_path / "dev1", tmp_path / "dev2"
        out = _gtracd("join", inv, home=dev1)
        assert "joined network 't-invite'" in out.stdout
        shown = json.loads(_gtracd("config", "show", "--json", home=dev1).stdout)
        assert shown["network"]["value"] == "t-invite" and shown["network"]["source"].startswith("file")
        assert any(a.endswith(cn.procs["a1"].peer_id) for a in shown["bootstrap"]["value"])
        assert Keystore(dev1 / "keys").anchors().keys() == {cn.procs["a1"].peer_id}
        # the second device: used up at the anchor, nothing written
        r = _gtracd("join", inv, home=dev2, check=False)
        assert r.returncode != 0 and "used_up" in r.stderr, r.stderr
        assert not (dev2 / "config.toml").exists() and not Keystore(dev2 / "keys").anchors()
        # tampered (one character of the signature region), expired, wrong network: refused, dev1 unchanged
        before = (dev1 / "config.toml").read_text()
        bad = inv[:-3] + ("A" if inv[-3] != "A" else "B") + inv[-2:]
        assert "invite refused" in _gtracd("join", bad, home=dev1, check=False).stderr
        # the anchor's own signature, on an invite whose hour has passed
        old = make_invite(Keystore(cn.keystore).load("a1"), "t-invite", [], time.time() - 1, 1)
        assert "expired" in _gtracd("join", old, home=dev2, check=False).stderr
        other = make_invite(Identity.generate(), "elsewhere", [], time.time() + 600)
        assert "foreign" in _gtracd("join", other, home=dev1, check=False).stderr
        assert (dev1 / "config.toml").read_text() == before
        assert not (dev2 / "config.toml").exists()
        assert (cn.status("a1") or {}).get("invites", {}).get("redeemed") == 1
    finally:
        cn.stop_all()
