"""What every control-plane daemon runs: one libp2p host from its key, gossip on the network's topics, the
links it keeps, a verifier with drop counters, a status file for `gtracd status`, and an optional event
trace (JSON lines; the tests and `gtracd bench ledger` time convergence from it).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import trio

from ..config import metrics_bind
from ..errors import UserError
from ..identity import Identity
from ..net import standins
from ..net.addresses import announced
from ..net.discovery import LanDiscovery
from ..net.gossip import running_gossip
from ..net.host import listening, local_ips, lock_file, running_host
from ..net.librarylogs import LIBRARY_LOGS
from ..net.links import Links
from ..net.relay import RelayClient, RelayServer, limits_of, run_services
from ..version import __version__
from ..wire.verifier import Verifier
from ..wire.versions import SPEAKS
from .httpd import bind_text, serve_asgi
from .observe import ObserveApp
from .statusfiles import status_dir, status_file, write_status  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from libp2p.abc import IHost

    from gtracd.config import Settings

log = logging.getLogger("gtracd.node")


class Events:
    """Append-only JSON-lines trace; a no-op without a path."""

    def __init__(self, path: str | None, who: str):
        self.who = who
        self._f = open(path, "a", buffering=1) if path else None

    def __call__(self, ev: str, **kw) -> None:
        if self._f is not None:
            self._f.write(json.dumps({"t": time.time(), "who": self.who, "ev": ev, **kw}) + "\n")

    def many(self, ev: str, rows) -> None:
        """One event per row (a dict of its fields), in one write (a replica loading its log traces every
        report it holds: line by line, that was a tenth of a restart)."""
        if self._f is not None:
            t, who = time.time(), self.who
            self._f.write("".join(json.dumps({"t": t, "who": who, "ev": ev, **kw}) + "\n" for kw in rows))

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class Heap:
    """The C heap as glibc sees it (Linux; elsewhere, e.g. Android's bionic, every call is a no-op). Freed
    memory stays in malloc's arenas, and a long-running daemon's RSS creeps up with it while the memory in
    use stays flat (bench soak: in use ~26 MiB flat, free 2.5 -> 9 MiB over seven minutes); `trim` hands the
    free pages back to the system."""

    TRIM_EVERY_S = 60.0

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                   "fsmblks", "uordblks", "fordblks", "keepcost")]

    def __init__(self):
        self.trims = 0
        try:
            libc = ctypes.CDLL("libc.so.6")
            self._trim, self._info = libc.malloc_trim, libc.mallinfo2
            self._info.restype = Heap._Info
        except (OSError, AttributeError):  # not glibc (or older than 2.33: no mallinfo2)
            self._trim = self._info = None

    def status(self) -> dict:
        out = {"rss_mib": _rss_mib()}
        if self._info is not None:
            i = self._info()
            out.update(heap_in_use_mib=round((i.uordblks + i.hblkhd) / 2**20, 1),
                       heap_free_mib=round(i.fordblks / 2**20, 1), trims=self.trims)
        return out

    def trim(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1


def status_mib(pid: int | str, field: str) -> float:
    """A kB field of /proc/PID/status (VmHWM: peak RSS, VmRSS: current RSS) in MiB; nan if absent."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _rss_mib() -> float | None:
    try:
        mib = status_mib("self", "VmRSS")
    except OSError:  # no /proc
        return None
    return None if math.isnan(mib) else round(mib, 1)


class Node:
    def __init__(self, role: str, name: str, ident: Identity, settings: Settings, host: IHost, gossip, links, events: Events):
        self.role, self.name, self.ident, self.settings = role, name, ident, settings
        self.host, self.gossip, self.links, self.events = host, gossip, links, events
        self.verifier = Verifier(max_skew_s=60.0)
        self.started = time.monotonic()
        self.status_path = status_file(settings, role, name, ident.peer_id)
        self.cut_path = status_dir(settings) / f"{role}-{name}.cut"
        self.status_parts: list = []  # callables returning dicts merged into the status (role, cache, requests)
        self.heap = Heap()
        self.metrics_urls: list[str] = []
        self.relay: RelayClient | None = None  # circuits in and out, reservations, DCUtR (running_node)
        self.relay_server: RelayServer | None = None
        self.members = lambda pid: pid in self.links.trusted  # who may reserve on our relay (roles widen it)

    @property
    def peer_id(self) -> str:
        return self.ident.peer_id

    @property
    def addrs(self) -> list[str]:
        """What this daemon offers peers (net/addresses.announced): --announce, or the listening addresses
        (wildcards expanded, loopback only if nothing else), then circuits through the relays it holds."""
        return announced(listening(self.host), local_ips(), self.settings.announce,
                         self.relay.circuits if self.relay else [], self.host.get_id().to_base58())

    def may_reserve(self, host_pid: str) -> bool:
        return self.settings.relay_allow == "any" or self.members(host_pid)

    def relays(self) -> list[str]:
        """The relays to hold a reservation on (--relay-via; `anchors`: each keyring anchor's known address)."""
        out = []
        for r in self.settings.relay_via:
            if r == "anchors":
                out += [a[0] for pid, a in self.links.addrs.items() if pid in self.links.trusted and a
                        and "/p2p-circuit" not in a[0]]
            else:
                out.append(r)
        return list(dict.fromkeys(out))

    def status(self) -> dict:
        g = self.gossip
        return {
            "role": self.role, "name": self.name, "peer_id": self.peer_id, "pid": os.getpid(), "addrs": self.addrs,
            "network": self.settings.network, "uptime_s": round(time.monotonic() - self.started, 1),
            "written_at": time.time(), "version": __version__, "wire": list(SPEAKS), "metrics": self.metrics_urls,
            "gossip": {"sent": dict(g.sent), "received": dict(g.received), "publish_errors": g.publish_errors,
                       "rejected": getattr(g.pubsub, "rejected", 0),
                       "topic_peers": {t: g.peers(t) for t in ("heartbeats", "reports", "ledger")}},
            "links": self.links.status(), "library_logs": dict(LIBRARY_LOGS),
            "dropped": dict(self.verifier.dropped), "accepted": self.verifier.accepted,
            "python": {"torch_loaded": "torch" in sys.modules, "standins": sorted(standins.USED)},
            "relay": {**(self.relay.status() if self.relay else {}),
                      **({"serving": self.relay_server.status()} if self.relay_server else {})},
            "memory": self.heap.status(),
            **{k: v for part in self.status_parts for k, v in part().items()},
        }

    async def link_cuts_on_signal(self) -> None:
        """SIGUSR1: re-read <data_dir>/run/<role>-<name>.cut (peer ids, one per line; missing or empty = heal)
        and cut exactly those links. The partition tests and `gtracd bench ledger` drive partitions with it.
        Only a daemon's main thread takes signals: a node in another thread (gtracd.Client) has no cuts."""

        if threading.current_thread() is not threading.main_thread():
            return
        with trio.open_signal_receiver(signal.SIGUSR1) as sigs:
            async for _ in sigs:
                try:
                    pids = set(self.cut_path.read_text().split())
                except OSError:
                    pids = set()
                await self.links.apply_cuts(pids)
                self.events("cut", peers=sorted(pids))

    async def write_status_forever(self, every: float = 1.0) -> None:
        self.status_path.parent.mkdir(parents=True, exist_ok=True)
        trimmed = time.monotonic()
        try:
            while True:
                try:
                    write_status(self.status_path, self.status())
                except OSError as e:
                    log.warning("cannot write status %s: %s", self.status_path, e)
                if time.monotonic() - trimmed >= Heap.TRIM_EVERY_S:  # (the status loop: every daemon has one)
                    self.heap.trim()
                    trimmed = time.monotonic()
                await trio.sleep(every)
        finally:
            try:
                self.status_path.unlink()
            except OSError:
                pass


@asynccontextmanager
async def running_node(role: str, name: str, ident: Identity, settings: Settings, events_path: str | None = None,
                       persistent_peerstore: bool = True):
    """Host, gossip and links up; yields the Node inside a nursery whose cancellation is a clean shutdown
    (the host closes first, then gossip services)."""

    ps = settings.home / "peers" / f"{role}-{name}.sqlite" if persistent_peerstore else None
    # one daemon per status slot, and per role and name when it keeps state under that name (peer store,
    # ledger replica, outbox): a second one would share them
    held = [lock_file(status_file(settings, role, name, ident.peer_id).with_suffix(".lock"),
                      lambda pid: f"another gtracd {role} named {name!r} with this key runs under {settings.home} "
                                  f"(pid {pid})")]
    if persistent_peerstore or role in ("seeker", "anchor"):  # they keep a ledger replica under their name
        held.append(lock_file(status_dir(settings) / f"{role}-{name}.lock",
                              lambda pid: f"another gtracd {role} named {name!r} runs under {settings.home} (pid "
                                          f"{pid}) and keeps its state there: give this one another --name or "
                                          "--data-dir"))
    events = Events(events_path, name)
    try:
        async with running_host(ident, settings.listen, ps) as host:
            async with running_gossip(host, settings.network) as gossip:
                links = Links(host, settings.bootstrap)
                gossip.blocked = links.cut
                node = Node(role, name, ident, settings, host, gossip, links, events)
                async with trio.open_nursery() as n:
                    node.nursery = n
                    node.relay = RelayClient(host)
                    links.circuit_dial = node.relay.dial
                    services = [node.relay.stop, node.relay.dcutr]
                    if settings.relay_serve == "on" or (settings.relay_serve == "auto" and role == "anchor"):
                        node.relay_server = RelayServer(host, limits_of(settings), node.may_reserve)
                        services.append(node.relay_server)
                    await run_services(n, *services)
                    await n.start(links.keep)
                    if settings.relay_via:
                        n.start_soon(node.relay.hold, node.relays, links)
                    if settings.discover == "mdns":
                        lan = LanDiscovery(host, settings.network, lambda: node.addrs,
                                           lambda addrs: links.hold(links.learn(addrs)))
                        node.status_parts.append(lan.status)
                        await n.start(lan.run)
                    n.start_soon(node.write_status_forever)
                    n.start_soon(node.link_cuts_on_signal)
                    if settings.metrics:
                        host, port = metrics_bind(settings.metrics)
                        try:
                            node.metrics_urls = await n.start(serve_asgi, ObserveApp(node.status),
                                                              bind_text(host, port))
                        except* OSError as eg:  # (hypercorn binds inside its own nursery)
                            e = eg.exceptions[0]
                            while isinstance(e, BaseExceptionGroup):
                                e = e.exceptions[0]
                            raise UserError(f"--metrics {settings.metrics}: cannot listen there "
                                            f"({getattr(e, 'strerror', None) or e}; `gtracd doctor` says what holds "
                                            "it)") from None
                    yield node
                    n.cancel_scope.cancel()
    finally:
        events.close()
        for f in held:
            f.close()
