"""GuardedPubsub: a pubsub reader that outlives the pubsub service (every shutdown stops pubsub before the host)
ends quietly instead of ending the daemon with an error, any other error still propagates; and each gossip
message is verified once, however many copies of it arrive (real hosts and gossip, in one process)."""

from __future__ import annotations

import pytest
import trio

from gtracd.identity import Identity
from gtracd.net import gossip
from gtracd.net.gossip import guarded_pubsub_class
from gtracd.net.host import dial, multiaddr_of, running_host

from .waiting import until

pytestmark = pytest.mark.timeout(30)


def _reader(monkeypatch, error: Exception):
    from libp2p.pubsub.pubsub import Pubsub

    async def library_reader(self, stream):
        raise error

    monkeypatch.setattr(Pubsub, "continuously_read_stream", library_reader)
    cls = guarded_pubsub_class()
    return object.__new__(cls)  # no host or router needed: only the reader is exercised


async def test_a_message_read_after_the_service_stopped_ends_the_reader(monkeypatch):
    pubsub = _reader(monkeypatch, RuntimeError("Nursery is closed to new arrivals"))
    await pubsub.continuously_read_stream(stream=None)


async def test_other_errors_from_the_reader_still_propagate(monkeypatch):
    pubsub = _reader(monkeypatch, RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="something else"):
        await pubsub.continuously_read_stream(stream=None)


async def test_each_message_is_verified_once_however_many_copies_arrive(monkeypatch):
    from libp2p.crypto.ed25519 import Ed25519PublicKey

    real_verify = Ed25519PublicKey.verify
    verified = []  # pubsub message signatures checked (peer records are signed under another prefix)

    def verify(self, data, signature):
        if data.startswith(b"libp2p-pubsub:"):
            verified.append(data)
        return real_verify(self, data, signature)

    monkeypatch.setattr(Ed25519PublicKey, "verify", verify)
    copies = []  # every message from another peer that reached push_msg

    def counting_class():
        base = guarded_pubsub_class()

        class Counting(base):
            async def push_msg(self, msg_forwarder, msg):
                if msg_forwarder != self.my_id:
                    copies.append(msg.seqno)
                await super().push_msg(msg_forwarder, msg)

        return Counting

    monkeypatch.setattr(gossip, "guarded_pubsub_class", counting_class)
    n_msgs, got = 20, {"b": 0, "c": 0}
    async with running_host(Identity.generate()) as ha, running_host(Identity.generate()) as hb, \
            running_host(Identity.generate()) as hc:
        async with gossip.running_gossip(ha, "t-once") as ga, gossip.running_gossip(hb, "t-once") as gb, \
                gossip.running_gossip(hc, "t-once") as gc:
            for x, y in ((ha, hb), (ha, hc), (hb, hc)):
                await dial(x, multiaddr_of(y)[0])
            async with trio.open_nursery() as n:
                for name, g in (("b", gb), ("c", gc)):
                    async def count(data, origin, name=name):
                        got[name] += 1
                    await n.start(g.serve, "reports", count)
                await n.start(ga.serve, "reports", lambda data, origin: trio.lowlevel.checkpoint())
                await until(lambda: all(g.mesh("reports") == 2 for g in (ga, gb, gc)), 15, "a full mesh")
                for i in range(n_msgs):
                    assert await ga.publish("reports", b"report %d" % i)
                # each of b and c gets every message from a and again from the other: 4 copies of each
                await until(lambda: got == {"b": n_msgs, "c": n_msgs} and len(copies) == 4 * n_msgs, 15,
                            "every copy of every message")
                assert len(verified) == 2 * n_msgs  # once at b, once at c; none for a's own, none for a copy
                # a forged signature is still refused by each, counted, and never delivered
                from libp2p.pubsub.pb import rpc_pb2

                forged = rpc_pb2.Message(from_id=ha.get_id().to_bytes(), data=b"forged", seqno=b"\xff" * 8,
                                         topicIDs=[ga.topic("reports")], signature=b"\x01" * 64)
                await ga.router.publish(ga.pubsub.my_id, forged)
                await until(lambda: gb.pubsub.rejected == gc.pubsub.rejected == 1, 15, "the forgery refused")
                assert got == {"b": n_msgs, "c": n_msgs}
                n.cancel_scope.cancel()
