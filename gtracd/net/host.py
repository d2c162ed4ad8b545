"""One libp2p host per daemon, from its gtracd key: Noise + Yamux only (no plaintext, no secio),
max one connection per peer (avoids the 250 ms happy-eyeballs delay), clean shutdown (host first)."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import ifaddr
import trio

from ..errors import UserError
from ..identity import Identity
from .librarylogs import count_library_logs

if TYPE_CHECKING:
    from libp2p.abc import IHost

log = logging.getLogger("gtracd.net")


def _quiet_libp2p() -> None:
    """libp2p's records are counted, and printed only when our root logger is at DEBUG (librarylogs)."""

    count_library_logs(debug=logging.getLogger().getEffectiveLevel() <= logging.DEBUG)
    logging.getLogger("multiaddr").setLevel(logging.WARNING)


def build_host(ident: Identity, peerstore=None):
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
    host = new_host(key_pair=kp, sec_opt={NOISE_ID: noise}, muxer_opt={YAMUX_ID: Yamux}, connection_config=cfg,
                    peerstore_opt=peerstore)
    _quiet_libp2p()
    return host


def multiaddr_of(host: IHost) -> list[str]:
    pid = host.get_id().to_base58()
    return [f"{a}" if "/p2p/" in str(a) else f"{a}/p2p/{pid}" for a in host.get_addrs()]


def listening(host: IHost) -> list[str]:
    """The host's listening transport addresses (no /p2p/ suffix; wildcards as bound)."""
    return [str(a).split("/p2p/", 1)[0] for a in host.get_addrs()]


_ips: list = [0.0, []]


def local_ips(max_age_s: float = 30.0) -> list[str]:
    """This machine's interface addresses (ifaddr: pure Python, a zeroconf dependency), re-read at most every
    `max_age_s`; [] if unavailable. IPv6 link-local addresses need a zone and are left out."""
    now = time.monotonic()
    if now - _ips[0] < max_age_s and _ips[1]:
        return _ips[1]
    out: list[str] = []
    try:
        for adapter in ifaddr.get_adapters():
            for ip in adapter.ips:
                if isinstance(ip.ip, str):
                    out.append(ip.ip)
                elif not ip.ip[0].lower().startswith("fe80"):
                    out.append(ip.ip[0])
    except Exception as e:  # no ifaddr, or no interface list on this platform (Android without netlink)
        log.debug("cannot list interfaces: %s", e)
    _ips[:] = [now, out]
    return out


def check_loopback_or_any(listen: str) -> None:
    if not listen.startswith("/ip4/") and not listen.startswith("/ip6/"):
        raise UserError(f"listen address {listen!r} must be an /ip4/ or /ip6/ TCP multiaddr")


def lock_port(maddr) -> object | None:
    """Two daemons can bind one port (SO_REUSEPORT): hold an exclusive lock file per fixed (address, port)."""

    try:
        port = int(maddr.value_for_protocol("tcp"))
        ip = maddr.value_for_protocol("ip4") if "/ip4/" in str(maddr) else maddr.value_for_protocol("ip6")
    except Exception:
        return None
    if port == 0:
        return None  # the kernel picks a free port
    d = private_dir(Path(tempfile.gettempdir()) / f"gtracd-ports-{os.getuid()}")
    return lock_file(d / f"{ip.replace(':', '_')}-{port}.lock",
                     lambda pid: f"port {port} on {ip} is already used by another gtracd daemon (pid {pid})")


def private_dir(d: Path) -> Path:
    """`d`, created 0700 if missing, and refused unless it is a real directory of ours that nobody else may
    write: in a shared temp directory another user could have made it first and planted links in it."""
    try:
        d.mkdir(mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError as e:
        raise UserError(f"cannot use {d}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise UserError(f"refusing {d}: it must be a directory owned by this user that others cannot write "
                        f"(remove it, or set TMPDIR to a private directory)")
    return d


def lock_file(path: Path, busy) -> object:
    """Hold an exclusive lock on `path` for this process's lifetime (the returned file; the kernel drops it
    when the process dies). If another process holds it: UserError(busy(its pid)). A symbolic link or anything
    but a regular file at `path` is refused, never followed (the lock file is truncated and written)."""

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as e:
        why = "it is a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise UserError(f"cannot use the lock file {path}: {why}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"cannot use the lock file {path}: not a regular file")
    f = os.fdopen(fd, "r+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        raise UserError(busy(holder)) from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    return f


def open_peerstore(path: Path | None):
    """The sqlite peerstore (addresses learned survive restarts), or the in-memory default."""
    if path is None:
        return None
    from libp2p.peer.persistent import create_sync_sqlite_peerstore

    path.parent.mkdir(parents=True, exist_ok=True)
    return create_sync_sqlite_peerstore(str(path))


@asynccontextmanager
async def running_host(ident: Identity, listen: str = "/ip4/127.0.0.1/tcp/0", peerstore_path: Path | None = None):
    import multiaddr

    check_loopback_or_any(listen)
    try:
        maddr = multiaddr.Multiaddr(listen)
    except Exception as e:
        raise UserError(f"bad listen multiaddr {listen!r}: {e}") from None
    lock = lock_port(maddr)
    store = open_peerstore(peerstore_path)
    host = build_host(ident, store)
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
    finally:
        if store is not None:
            try:
                store.close()
            except Exception:
                pass
        if lock is not None:
            lock.close()


async def dial(host: IHost, addr: str, timeout: float = 10.0):
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
    if not host.get_network().get_connections(info.peer_id):
        # the swarm dials one stored address per peer (a public one first): make it this one, or a peer's
        # second address would never be tried (net/links.dial_any walks them in order)
        try:
            host.get_peerstore().clear_addrs(info.peer_id)
        except Exception:
            pass
    with trio.fail_after(timeout):
        await host.connect(info)
    return info.peer_id


IDENTIFY = "/ipfs/id/1.0.0"  # every libp2p host answers it


async def answers(host: IHost, peer: str, wait: float) -> bool:
    """Does `peer` (base58) open a stream within `wait` (redialling it if the connection is gone)?"""
    from libp2p.custom_types import TProtocol
    from libp2p.peer.id import ID

    try:
        with trio.fail_after(wait):
            s = await host.new_stream(ID.from_base58(peer), [TProtocol(IDENTIFY)])
            await s.reset()
    except Exception:
        return False
    return True


async def open_stream(host: IHost, peer_id, protocol: str, timeout: float = 10.0):
    from libp2p.custom_types import TProtocol

    with trio.fail_after(timeout):
        return await host.new_stream(peer_id, [TProtocol(protocol)])
