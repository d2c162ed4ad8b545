"""Stand-ins for the compiled packages libp2p imports eagerly but gtracd never calls (gtracd/net/standins.py):
they appear only where a package is missing, evaluate libp2p's module bodies, and fail loudly when used; a
daemon running on stand-ins refuses a secp256k1 peer's handshake cleanly and keeps serving Ed25519 peers;
gossip signed with keys that do not parse (or need a stand-in) is dropped and counted, on a phone or not."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from contextlib import asynccontextmanager

import pytest

from gtracd.net import standins
from gtracd.net.host import dial

from .waiting import until


@pytest.fixture
def fake_never_called(monkeypatch):
    monkeypatch.setattr(standins, "NEVER_CALLED", standins.NEVER_CALLED + ("gtracd_absent_pkg", "json"))
    yield
    for m in [m for m in sys.modules if m.split(".")[0] == "gtracd_absent_pkg"]:
        del sys.modules[m]


def test_a_missing_package_gets_a_stand_in_that_evaluates_and_fails_loudly_when_used(fake_never_called):
    import gtracd_absent_pkg.sub.deeper as deeper  # noqa: F401  (a package: its submodules are stand-ins too)
    from gtracd_absent_pkg import PublicKey
    from gtracd_absent_pkg.curve import secp256k1

    class Sub(PublicKey):  # libp2p subclasses and annotates with these at import time
        pass

    assert (PublicKey | None) is not None and PublicKey[int] is PublicKey and secp256k1.order is not None
    with pytest.raises(standins.StandInUsed, match="'gtracd_absent_pkg' is not installed"):
        PublicKey(b"\x02" * 33)
    with pytest.raises(TypeError):  # what py-multihash's probe of optional hashes expects
        secp256k1.order()
    assert "gtracd_absent_pkg" in standins.USED and not standins.installed("gtracd_absent_pkg")


def test_an_installed_package_is_never_shadowed(fake_never_called):
    import json as real

    assert real.dumps({"a": 1}) == '{"a": 1}' and standins.installed("json")
    assert "json" not in standins.USED


LISTENER = textwrap.dedent("""
    import sys
    from gtracd.net import standins
    standins.install(prefer=True)  # a phone: every never-called package is a stand-in, installed or not
    from gtracd.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@asynccontextmanager
async def anchor_process(tmp_path, name: str, network: str, phone: bool = True):
    """A real anchor in a subprocess (on stand-ins for every never-called package when `phone`); yields its
    (process, address); it must end without a traceback."""
    ready = tmp_path / "ready.json"
    code = LISTENER if phone else LISTENER.replace("standins.install(prefer=True)", "pass")
    p = subprocess.Popen([sys.executable, "-c", code, "--role", "anchor", "--ephemeral", "--name", name,
                          "--network", network, "--data-dir", str(tmp_path), "--ready-file", str(ready)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        await until(lambda: ready.exists() or p.poll() is not None, 60, "the anchor to start")
        assert p.poll() is None, p.stderr.read()
        yield p, json.loads(ready.read_text())["addrs"][0]
    finally:
        p.terminate()
        _, err = p.communicate(timeout=20)
    assert "Traceback" not in err, err


@pytest.mark.procs
@pytest.mark.smoke
@pytest.mark.timeout(120)
@pytest.mark.skipif(not standins.installed("coincurve"), reason="the secp256k1 dialer needs the real coincurve")
async def test_a_daemon_on_stand_ins_refuses_a_secp256k1_peer_and_serves_ed25519_peers(tmp_path):
    from libp2p import new_host
    from libp2p.crypto.secp256k1 import create_new_key_pair as secp_pair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    from gtracd.identity import Identity
    from gtracd.net.host import dial, running_host

    async with anchor_process(tmp_path, "phone", "t-standins") as (p, addr):
        kp = secp_pair()
        secp = new_host(key_pair=kp, sec_opt={NOISE_ID: Noise(libp2p_keypair=kp,
                                                                noise_privkey=x25519_pair().private_key)},
                        muxer_opt={YAMUX_ID: Yamux})
        import multiaddr

        async with secp.run(listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")]):
            with pytest.raises(Exception):  # noqa: B017  (whatever libp2p raises: the handshake must fail)
                await dial(secp, addr, timeout=10)
            await secp.close()
        async with running_host(Identity.generate()) as host:
            await dial(host, addr, timeout=10)  # an Ed25519 peer still connects
        assert p.poll() is None  # and the daemon is still up


SECP_G = bytes.fromhex("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")  # a valid point
BAD_KEYS = {"rsa-junk": b"\x08\x00\x12\x04junk", "ed25519-short": b"\x08\x01\x12\x03abc",
            "secp256k1-valid": b"\x08\x02\x12\x21" + SECP_G}


@pytest.mark.procs
@pytest.mark.smoke
@pytest.mark.timeout(120)
@pytest.mark.parametrize("phone", [False, True], ids=["full-install", "phone-standins"])
async def test_gossip_signed_with_unparseable_or_stood_in_keys_is_dropped_not_fatal(tmp_path, phone):
    import os

    from libp2p.pubsub.pb import rpc_pb2

    from gtracd.config import load_settings
    from gtracd.daemon.node import running_node
    from gtracd.identity import Identity

    async with anchor_process(tmp_path, "target", "t-badkey", phone) as (p, addr):
        s = load_settings(None, {"network": "t-badkey", "bootstrap": addr, "data_dir": str(tmp_path / "me")}, env={})
        async with running_node("fleet", "evil", Identity.generate(), s, None, persistent_peerstore=False) as node:
            g = node.gossip
            t = g.topic("heartbeats")
            await g.pubsub.subscribe(t)
            await until(lambda: g.peers("heartbeats") > 0, 30, "the anchor on the heartbeat topic")
            for k in BAD_KEYS.values():
                msg = rpc_pb2.Message(from_id=b"\x12\x20" + os.urandom(32), data=b"x", seqno=os.urandom(8),
                                      topicIDs=[t], signature=b"\x01" * 64, key=k)
                await g.router.publish(g.pubsub.my_id, msg)

            def rejected():
                from gtracd.cli.status import collect

                docs = [d for d in collect(load_settings(None, {"data_dir": str(tmp_path)}, env={}), "target")]
                return docs and docs[0]["gossip"]["rejected"] >= len(BAD_KEYS)

            await until(rejected, 30, "the anchor to count the bad messages")
            assert p.poll() is None  # still up
            await dial(node.host, addr)  # and still serving
