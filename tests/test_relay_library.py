"""What py-libp2p 0.8.1 gets wrong that net/ works around, shown against the library itself (in-process hosts
on loopback), next to our layer doing it right (docs/decisions.md, "Real networks")."""

from __future__ import annotations

import multiaddr
import pytest
import trio
from libp2p.network.exceptions import SwarmException
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.relay.circuit_v2.pb.circuit_pb2 import HopMessage
from libp2p.relay.circuit_v2.pb.circuit_pb2 import PeerId as CircuitPeer
from libp2p.relay.circuit_v2.protocol import PROTOCOL_ID, CircuitV2Protocol
from libp2p.relay.circuit_v2.protocol_buffer import StatusCode
from libp2p.relay.circuit_v2.utils import read_delimited_msg, write_delimited_msg

from gtracd.config import Settings
from gtracd.identity import Identity
from gtracd.net.host import multiaddr_of, running_host
from gtracd.net.links import dial_any
from gtracd.net.relay import RelayServer, limits_of, run_services

pytestmark = pytest.mark.timeout(60)


async def test_the_swarm_dials_one_stored_address_per_peer_and_dial_any_tries_each():
    async with running_host(Identity.generate()) as target, running_host(Identity.generate()) as me:
        good = multiaddr_of(target)[0]
        pid = target.get_id()
        bad = f"/ip4/127.0.0.1/tcp/1/p2p/{pid.to_base58()}"  # refused at once
        # the library: both addresses known, only the first is dialled, the good one never
        with pytest.raises(SwarmException):
            with trio.fail_after(10):
                await me.connect(PeerInfo(pid, [multiaddr.Multiaddr(bad.rsplit("/p2p/", 1)[0]),
                                                multiaddr.Multiaddr(good.rsplit("/p2p/", 1)[0])]))
        assert not me.get_network().get_connections(pid)
        # ours: each address in turn
        got, relay = await dial_any(me, [bad, good], 5.0)
        assert got == pid and relay is None


async def _reserve(host, relay_id: ID, peer_field: bytes | None) -> int:
    stream = await host.new_stream(relay_id, [PROTOCOL_ID])
    msg = HopMessage(type=HopMessage.RESERVE)
    if peer_field is not None:
        msg.peer.CopyFrom(CircuitPeer(id=peer_field))
    await write_delimited_msg(stream, msg)
    with trio.fail_after(10):
        resp = await read_delimited_msg(stream, HopMessage)
    await stream.reset()
    return StatusCode(resp.status) if resp.HasField("status") else StatusCode.OK


async def test_a_reservation_is_for_its_caller_only():
    """The library reads the reserving peer from the request's optional `peer` field (it then fails for a peer
    that is not connected, with a malformed-message status); our relay refuses such a request outright, says
    why, and counts it."""
    victim = Identity.generate()
    for ours in (False, True):
        async with running_host(Identity.generate()) as relay, running_host(Identity.generate()) as caller:
            async with trio.open_nursery() as n:
                svc = (RelayServer(relay, limits_of(Settings()), lambda pid: True) if ours
                       else CircuitV2Protocol(relay, allow_hop=True))
                await run_services(n, svc)
                await caller.connect(PeerInfo(relay.get_id(), [multiaddr.Multiaddr(
                    multiaddr_of(relay)[0].rsplit("/p2p/", 1)[0])]))
                code = await _reserve(caller, relay.get_id(), ID.from_base58(victim.peer_id).to_bytes())
                assert not svc.resource_manager.has_reservation(ID.from_base58(victim.peer_id))
                if ours:
                    assert code == StatusCode.PERMISSION_DENIED and svc.refused["spoofed_peer"] == 1
                else:
                    assert code != StatusCode.OK
                assert await _reserve(caller, relay.get_id(), None) == StatusCode.OK  # its own: granted
                n.cancel_scope.cancel()


async def test_the_library_would_advertise_a_wildcard_on_mdns_we_advertise_interfaces():
    from types import SimpleNamespace

    from libp2p.discovery.mdns.broadcaster import PeerBroadcaster

    from gtracd.net.addresses import announced
    from gtracd.net.host import listening, local_ips

    async with running_host(Identity.generate(), "/ip4/0.0.0.0/tcp/0") as host:
        theirs = PeerBroadcaster._resolve_host_addrs(SimpleNamespace(host=host, listen_addrs=[]))
        assert any("/ip4/0.0.0.0/" in a for a in theirs)  # found by others, dialled by nobody
        ours = announced(listening(host), local_ips(), [], [], host.get_id().to_base58())
        assert ours and not any("/ip4/0.0.0.0/" in a for a in ours)
