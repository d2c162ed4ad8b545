"""Circuit relay v2 for peers that cannot be dialled, and DCUtR to go direct where the network allows: the
library's implementations (libp2p/relay/circuit_v2), configured for inference and guarded (notes/realnet.md).

Serving (`RelayServer`; anchors by default, any daemon with `--relay-serve on`):
- Who may reserve a slot (`--relay-allow`): `members` (default) — peers this daemon heard a signed heartbeat
  from on this network, naming the reserving host — and keyring anchors; `any`; or nobody (`off` serving).
  The library takes the reserving peer id from the request's optional `peer` field; we refuse a request whose
  field names anyone but the authenticated remote.
- Limits, sized for hidden-state streams (long-lived, ~5 kB per token per hop for SmolLM2): reservations in
  total, circuits per reservation, bytes and seconds per circuit (`relay_*` settings). The library's "0 =
  unlimited" kills every circuit at its first bytes, so 0 is refused here. Circuits only reach a peer that holds
  a reservation (the library checks), so strangers can relay only to members, within those bounds.

Using (`RelayClient`; every daemon): the STOP side (accept circuits), dialling circuit addresses
(`Links.circuit_dial`: the libp2p host cannot, it refuses relay-only addresses), reservations on the relays in
`--relay-via` (workers that cannot be dialled; the word `anchors` means every keyring anchor with a known
address), renewed before they expire and after every reconnect (a reservation counts only while its holder
stays connected to the relay), and DCUtR (a relayed peer is plain-dialled at the addresses identify learned,
every 2 s at first, and the circuit is kept until the direct connection works).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import multiaddr
import trio
from libp2p.peer.id import ID
from libp2p.relay.circuit_v2.config import RelayConfig, RelayRole
from libp2p.relay.circuit_v2.dcutr import DCUtRProtocol
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.resources import RelayLimits
from libp2p.relay.circuit_v2.transport import CircuitV2Transport
from libp2p.tools.anyio_service import background_trio_service

from ..errors import UserError
from .addressbook import split_addr
from .addresses import with_peer
from .host import dial

if TYPE_CHECKING:
    from libp2p.abc import IHost

    from gtracd.config import Settings

log = logging.getLogger("gtracd.relay")
ALLOW = ("members", "any")
RESERVE_EVERY_S = 30.0  # re-reserve this often (a restarted relay forgot us)
RESERVATION_TTL_S = 120  # a holder that left frees its slot within this (the library counts it until it expires)
CIRCUITS_PER_SOURCE = 8  # circuits one dialling peer may hold open through this relay at once


def limits_of(s: Settings) -> RelayLimits:
    """The relay's limits from the settings (validated >= 1 there: the library reads 0 as 'cut at once')."""
    return RelayLimits(duration=int(s.relay_circuit_s), data=int(s.relay_circuit_mib) << 20,
                       max_circuit_conns=int(s.relay_circuits), max_reservations=int(s.relay_reservations),
                       reservation_ttl=RESERVATION_TTL_S)


class RelayServer(CircuitV2Protocol):
    """The library's relay (HOP) with our admission: `may_reserve(host peer id)`."""

    def __init__(self, host: IHost, limits: RelayLimits, may_reserve):
        super().__init__(host, limits=limits, allow_hop=True)
        self.may_reserve = may_reserve
        self.refused = {"not_member": 0, "spoofed_peer": 0, "source_busy": 0, "relay_busy": 0}
        self.by_source: dict[str, int] = {}  # dialling peer -> its circuits open through us
        self.open_circuits = 0

    async def _handle_connect(self, stream, msg) -> None:
        """CONNECT, bounded per dialling peer and in total (counted before any await, so simultaneous requests
        cannot overshoot), and for at most the circuit duration even when no data flows (the library checks the
        duration only as data passes)."""
        src = stream.muxed_conn.peer_id.to_base58()
        total = self.limits.max_reservations * self.limits.max_circuit_conns
        if self.by_source.get(src, 0) >= CIRCUITS_PER_SOURCE:
            self.refused["source_busy"] += 1
            await self._send_status(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, "too many circuits from you")
            return
        if self.open_circuits >= total:
            self.refused["relay_busy"] += 1
            await self._send_status(stream, StatusCode.RESOURCE_LIMIT_EXCEEDED, "relay full")
            return
        self.by_source[src] = self.by_source.get(src, 0) + 1
        self.open_circuits += 1
        try:
            with trio.move_on_after(self.limits.duration):
                await super()._handle_connect(stream, msg)
        finally:
            self.open_circuits -= 1
            self.by_source[src] -= 1
            if not self.by_source[src]:
                del self.by_source[src]

    async def _handle_reserve(self, stream, msg) -> None:
        remote = stream.muxed_conn.peer_id
        if msg.HasField("peer") and msg.peer.id and ID(msg.peer.id) != remote:
            self.refused["spoofed_peer"] += 1
            await self._send_status(stream, StatusCode.PERMISSION_DENIED, "a reservation is for its holder only")
            return
        if not self.may_reserve(remote.to_base58()):
            self.refused["not_member"] += 1
            await self._send_status(stream, StatusCode.PERMISSION_DENIED, "not a member of this network")
            return
        await super()._handle_reserve(stream, msg)

    def status(self) -> dict:
        rm = self.resource_manager
        return {"reservations": len(getattr(rm, "_reservations", {})), "max_reservations": self.limits.max_reservations,
                "circuits_per_reservation": self.limits.max_circuit_conns,
                "circuit_mib": self.limits.data >> 20, "circuit_s": self.limits.duration,
                "active_circuits": self.open_circuits, "refused": dict(self.refused)}


class RelayClient:
    """Accept circuits (STOP), dial circuit addresses, hold reservations, upgrade with DCUtR."""

    def __init__(self, host: IHost):
        self.host = host
        self.stop = CircuitV2Protocol(host, allow_hop=False)
        # STOP only: dialling through a relay must not take a reservation slot (the default roles reserve first)
        self.transport = CircuitV2Transport(host, self.stop, RelayConfig(roles=RelayRole.STOP))
        self.dcutr = KeepCircuits(host)
        self.reserved: dict[str, float] = {}  # relay peer id -> when last reserved (time.time())
        self.circuits: list[str] = []  # /.../p2p/R/p2p-circuit addresses of held reservations
        self.errors: dict[str, str] = {}
        self.refusals: dict[str, int] = {}  # relay -> refusals in a row
        self.retry_at: dict[str, float] = {}  # relay -> no reservation request before this (time.time())

    async def dial(self, addr: str, timeout: float):
        """Connect to the peer at a circuit multiaddr; returns its libp2p ID."""
        try:
            ma = multiaddr.Multiaddr(addr)
        except Exception as e:
            raise UserError(f"bad circuit multiaddr {addr!r}: {e}") from None
        with trio.fail_after(timeout):
            conn = await self.transport.dial(ma)
        return conn.muxed_conn.peer_id if hasattr(conn, "muxed_conn") else ID.from_base58(split_addr(addr))

    async def reserve(self, relay_addr: str, timeout: float = 10.0) -> bool:
        """One reservation on the relay at `relay_addr` (/.../p2p/R); True if granted."""
        rid = await dial(self.host, relay_addr, timeout)
        with trio.fail_after(timeout):
            stream = await self.host.new_stream(rid, [PROTOCOL_ID])
            try:
                ok = await self.transport._make_reservation(stream, rid)
            finally:
                with trio.move_on_after(1):
                    await stream.close()
        return ok

    async def hold(self, relays, links, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Keep a reservation on every relay `relays()` names (multiaddrs): re-reserve every RESERVE_EVERY_S
        and as soon as a relay's connection is back; publish the circuit addresses of those held."""
        started = False
        while True:
            held = []
            connected = links.connected()
            wanted = relays()
            for addr in wanted:
                rid = split_addr(addr)
                now = time.time()
                due = now - self.reserved.get(rid, 0.0) > RESERVE_EVERY_S or rid not in connected
                try:
                    if due and now >= self.retry_at.get(rid, 0.0):
                        if await self.reserve(addr):
                            self.reserved[rid] = time.time()
                            self.errors.pop(rid, None)
                            self.refusals.pop(rid, None)
                        else:  # not (yet) a member, or the relay is full: back off, 2 s doubling to 60 s
                            self.reserved.pop(rid, None)
                            self.errors[rid] = "refused"
                            self.refusals[rid] = self.refusals.get(rid, 0) + 1
                            self.retry_at[rid] = now + min(60.0, 2.0 * 2 ** (self.refusals[rid] - 1))
                except Exception as e:  # unreachable relay, timed out: retried next round
                    self.reserved.pop(rid, None)
                    self.errors[rid] = f"{type(e).__name__}: {e}"[:200]
                if rid in self.reserved:
                    held.append(f"{with_peer(addr, rid)}/p2p-circuit")
            self.circuits = held
            if not started:
                task_status.started()
                started = True
            await trio.sleep(2.0 if len(held) < len(wanted) else 5.0)

    def connections(self) -> dict[str, int]:
        """Peers by how we are connected to them: relayed only, direct (DCUtR may have added it next to a
        circuit), and upgraded (both: a circuit that went direct)."""
        out = {"relayed": 0, "direct": 0, "upgraded": 0}
        try:
            conns = self.host.get_network().get_connections_map()
        except Exception:
            return out
        for cs in conns.values():
            relayed, direct = _kinds(cs)
            out["upgraded" if relayed and direct else "relayed" if relayed else "direct"] += 1
        return out

    def status(self) -> dict:
        return {"circuits": list(self.circuits), "errors": dict(self.errors), "connections": self.connections()}


def _kinds(conns) -> tuple[bool, bool]:
    """(any relayed, any direct) among a peer's connections."""
    kinds = {str(getattr(c.get_connection_type(), "name", c.get_connection_type())).lower() for c in conns}
    return any("relay" in k for k in kinds), any("relay" not in k for k in kinds)


def direct_to(host: IHost, peer: str) -> bool:
    """Do we hold a direct (not relayed) connection to `peer` (base58)?"""
    try:
        conns = host.get_network().get_connections(ID.from_base58(peer))
    except Exception:
        return False
    return bool(conns) and _kinds(conns)[1]


class KeepCircuits(DCUtRProtocol):
    """DCUtR without its relay close: 60 s after a hole punch the library closes every relayed connection to the
    peer, streams open on it or not, which would cut a session opened on the circuit and blame an honest worker
    for it. The circuit stays (bounded by the relay's limits); new streams take the direct connection."""

    def _schedule_relay_close(self, peer_id) -> None:
        return None


async def run_services(nursery, *services) -> None:
    """Start libp2p services (relay, STOP, DCUtR) in `nursery`; returns once each has started."""
    for svc in services:
        ready = trio.Event()

        async def one(svc=svc, ready=ready):
            async with background_trio_service(svc):
                ready.set()
                await trio.sleep_forever()

        nursery.start_soon(one)
        with trio.fail_after(10):
            await ready.wait()
