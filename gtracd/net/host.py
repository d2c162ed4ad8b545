"""One libp2p host per daemon, from its gtracd key: Noise + Yamux only (no plaintext, no secio),
max one connection per peer (avoids the 250 ms happy-eyeballs delay), clean shutdown (host first)."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

import trio

from ..errors import UserError
from ..identity import Identity

log = logging.getLogger("gtracd.net")


def _quiet_libp2p() -> None:
    lg = logging.getLogger("libp2p")
    lg.propagate = True  # libp2p detaches its logger; route its warnings to ours
    level = os.environ.get("GTRACD_LIBP2P_LOG", "WARNING").upper()
    lg.setLevel(level)
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(child, logging.Logger) and child.level:
            child.setLevel(level)  # some libp2p modules pin themselves to INFO
    logging.getLogger("multiaddr").setLevel(logging.WARNING)


def build_host(ident: Identity):
    os.environ.setdefault("PY_YAMUX_RELEASE_ON_READ", "0")
    from libp2p import new_host
    from libp2p.crypto.ed25519 import Ed25519PrivateKey
    from libp2p.crypto.keys import KeyPair
    from libp2p.crypto.x25519 import create_new_key_pair as x25519_pair
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    priv = Ed25519PrivateKey.from_bytes(ident.seed)
    kp = KeyPair(priv, priv.get_public_key())
    noise = Noise(libp2p_keypair=kp, noise_privkey=x25519_pair().private_key)
    # min_connections/low_watermark 0: no auto-dialling of every peer in the peerstore
    cfg = ConnectionConfig(max_connections_per_peer=1, min_connections=0, low_watermark=0,
                           auto_connect_interval=1e9)
    host = new_host(key_pair=kp, sec_opt={NOISE_ID: noise}, muxer_opt={YAMUX_ID: Yamux}, connection_config=cfg)
    _quiet_libp2p()
    return host


def multiaddr_of(host) -> list[str]:
    pid = host.get_id().to_base58()
    return [f"{a}" if "/p2p/" in str(a) else f"{a}/p2p/{pid}" for a in host.get_addrs()]


def check_loopback_or_any(listen: str) -> None:
    if not listen.startswith("/ip4/") and not listen.startswith("/ip6/"):
        raise UserError(f"listen address {listen!r} must be an /ip4/ or /ip6/ TCP multiaddr")


@asynccontextmanager
async def running_host(ident: Identity, listen: str = "/ip4/127.0.0.1/tcp/0"):
    import multiaddr

    check_loopback_or_any(listen)
    try:
        maddr = multiaddr.Multiaddr(listen)
    except Exception as e:
        raise UserError(f"bad listen multiaddr {listen!r}: {e}") from None
    host = build_host(ident)
    try:
        async with host.run(listen_addrs=[maddr]):
            try:
                yield host
            finally:
                with trio.move_on_after(3) as cs:
                    cs.shield = True
                    await host.close()
    except OSError as e:
        raise UserError(f"cannot listen on {listen}: {e.strerror or e}") from None


async def dial(host, addr: str, timeout: float = 10.0):
    """Connect to a /.../p2p/ID multiaddr; returns the peer ID object."""
    import multiaddr
    from libp2p.peer.peerinfo import info_from_p2p_addr

    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as e:
        raise UserError(f"bad peer multiaddr {addr!r} (need /ip4/HOST/tcp/PORT/p2p/ID): {e}") from None
    try:
        host.get_network().unblock_peer(info.peer_id)  # lift the 60 s negative dial cache after a failure
    except Exception:
        pass
    with trio.fail_after(timeout):
        await host.connect(info)
    return info.peer_id


async def open_stream(host, peer_id, protocol: str, timeout: float = 10.0):
    from libp2p.custom_types import TProtocol

    with trio.fail_after(timeout):
        return await host.new_stream(peer_id, [TProtocol(protocol)])
