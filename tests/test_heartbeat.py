"""Heartbeats (batching, per-item verification), liveness, and the listen-port lock."""

from __future__ import annotations

import time
from types import SimpleNamespace

import msgpack
import pytest

from gtracd.control.heartbeat import Hosted, admit_heartbeats, heartbeat_messages
from gtracd.control.peerview import PeerView
from gtracd.errors import UserError
from gtracd.identity import Identity
from gtracd.wire.envelope import Signer
from gtracd.wire.verifier import Verifier


def fake_node(network="n"):
    return SimpleNamespace(verifier=Verifier(), settings=SimpleNamespace(network=network))


def hosted(n, addr="/ip4/127.0.0.1/tcp/9/p2p/12D3KooWhost"):
    return [Hosted(Signer(Identity.generate()), "fp", 3 * (i % 3), 3 * (i % 3) + 3, 9, [addr], f"w{i}",
                   state=lambda: {"free_tokens": 100, "load": 0.5}) for i in range(n)]


def test_many_identities_travel_as_one_batch_each_item_signed_by_its_identity():
    host = Signer(Identity.generate())
    hs = hosted(50)
    msgs = heartbeat_messages(host, "n", hs)
    assert len(msgs) == 1  # 50 identities, one gossip message
    node = fake_node()
    got = admit_heartbeats(node, msgs[0], time.time())
    assert sorted(w.peer_id for w in got) == sorted(h.signer.ident.peer_id for h in hs)
    assert all(w.free_tokens == 100 and w.load == 0.5 and w.total_layers == 9 for w in got)
    # a single identity that is the process itself sends a plain heartbeat
    solo = Hosted(host, "fp", 0, 9, 9, ["/ip4/127.0.0.1/tcp/9/p2p/x"])
    assert len(heartbeat_messages(host, "n", [solo])) == 1
    assert admit_heartbeats(fake_node(), heartbeat_messages(host, "n", [solo])[0])[0].peer_id == host.ident.peer_id


def test_every_gossip_payload_fits_one_yamux_frame_and_down_identities_are_silent():
    from gtracd.control.heartbeat import GOSSIP_PAYLOAD_MAX

    host = Signer(Identity.generate())
    hs = hosted(400)  # a lab process serving hundreds of virtual peers
    msgs = heartbeat_messages(host, "n", hs)
    assert len(msgs) > 1 and all(len(m) < GOSSIP_PAYLOAD_MAX for m in msgs)
    got = [w.peer_id for m in msgs for w in admit_heartbeats(fake_node(), m, time.time())]
    assert sorted(got) == sorted(h.signer.ident.peer_id for h in hs)
    hs[0].alive = lambda: False  # a crashed / flapping virtual peer stops heartbeating
    got = {w.peer_id for m in heartbeat_messages(host, "n", hs) for w in admit_heartbeats(fake_node(), m)}
    assert hs[0].signer.ident.peer_id not in got and len(got) == 399


def test_a_forged_item_inside_a_valid_batch_is_dropped_alone():
    host = Signer(Identity.generate())
    hs = hosted(3)
    items = [h.signer.sign("heartbeat", h.body("n")).raw for h in hs]
    obj = msgpack.unpackb(items[1])
    obj["body"]["start"], obj["body"]["end"] = 0, 9  # claim more layers; the item's signature no longer holds
    bad = msgpack.packb(obj, use_bin_type=True)
    batch = host.sign("heartbeat_batch", {"network": "n", "items": [items[0], bad, items[2]]}).raw
    node = fake_node()
    got = admit_heartbeats(node, batch)
    assert len(got) == 2 and node.verifier.dropped["bad_signature"] == 1
    other = fake_node("other-network")
    assert admit_heartbeats(other, batch) == [] and other.verifier.dropped["wrong_network"] == 1


def test_alive_iff_heard_within_node_timeout():
    view = PeerView()
    w = admit_heartbeats(fake_node(), heartbeat_messages(Signer(Identity.generate()), "n", hosted(1))[0])[0]
    w.last_seen = 1000.0
    assert view.heard(w)
    assert view.refresh(1029.0, 30.0) == [] and view.workers[w.peer_id].alive
    assert view.refresh(1031.0, 30.0) == [w.peer_id] and not view.workers[w.peer_id].alive
    assert view.snapshot("fp").peers[0].alive is False
    w2 = admit_heartbeats(fake_node(), heartbeat_messages(Signer(Identity.generate()), "n", hosted(1))[0])[0]
    w2.peer_id, w2.last_seen = w.peer_id, 1040.0
    assert view.heard(w2) and view.workers[w.peer_id].alive  # came back


async def test_a_second_daemon_on_the_same_port_is_refused():
    from gtracd.harness.controlnet import free_port
    from gtracd.net.host import running_host

    port = free_port()
    async with running_host(Identity.generate(), f"/ip4/127.0.0.1/tcp/{port}"):
        with pytest.raises(UserError, match="already used by another gtracd daemon"):
            async with running_host(Identity.generate(), f"/ip4/127.0.0.1/tcp/{port}"):
                pass
