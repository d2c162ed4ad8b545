"""Forged, replayed, tampered, oversize, untrusted and garbage control messages — over real gossip and the real
ledger stream, in one process — are dropped and counted by reason; the honest report still gets in, and
reaches a seeker that accepts ledger data from its keyring anchor only."""

from __future__ import annotations

import struct

import msgpack

from gtracd.anchor.main import AnchorDaemon
from gtracd.config import load_settings
from gtracd.control.follower import Follower
from gtracd.control.peerview import PeerView
from gtracd.daemon.node import running_node
from gtracd.identity import Identity
from gtracd.net.framing import FramedStream
from gtracd.net.host import open_stream
from gtracd.net.ledgersync import submit
from gtracd.net.protocols import LEDGER
from gtracd.wire.envelope import Signer

from .waiting import until

NET = "t-adv"
WORKER, SEEKER, MALLORY = Identity.generate(), Identity.generate(), Identity.generate()


def settings(tmp, **kw):
    return load_settings(None, {"network": NET, "data_dir": str(tmp), **kw}, env={})


def heartbeat(ident, **over):
    body = {"network": NET, "model": "m", "start": 0, "end": 4, "addrs": [f"/ip4/127.0.0.1/tcp/1/p2p/{ident.peer_id}"],
            "free_tokens": 10, "load": 0.0, "version": "t", "total_layers": 4, **over}
    return Signer(ident).sign("heartbeat", body)


def report(ident, seq_signer=None, **over):
    body = {"network": NET, "request_id": b"r" * 16, "model": "m", "mode": "g-trac", "chain": [WORKER.peer_id],
            "latency_ms": [12.5], "outcome": "success", "culprit": -1, "tokens": 4, **over}
    return (seq_signer or Signer(ident)).sign("trust_report", body)


def resign_as(env, victim_public: bytes, body_over: dict | None = None, sig: bytes | None = None) -> bytes:
    obj = msgpack.unpackb(env.raw, raw=False)
    obj["from"] = victim_public
    if body_over:
        obj["body"].update(body_over)
    if sig is not None:
        obj["sig"] = sig
    return msgpack.packb(obj, use_bin_type=True)


async def test_bad_control_messages_are_dropped_and_counted(tmp_path):
    async with running_node("anchor", "a", Identity.generate(), settings(tmp_path / "a"), None, False) as anode:
        anchor = AnchorDaemon(anode, anchors=set())
        await anode.nursery.start(anchor.run)
        boot = anode.addrs[0]
        async with running_node("seeker", "mallory", MALLORY, settings(tmp_path / "m", bootstrap=[boot]), None,
                                False) as m, \
                running_node("seeker", "victim", SEEKER, settings(tmp_path / "v", bootstrap=[boot]), None,
                             False) as vnode:
            victim = Follower(vnode, PeerView(), anchors={anode.peer_id})  # its keyring: the anchor only
            await vnode.nursery.start(victim.run)
            await until(lambda: all(m.gossip.peers(t) >= 1 for t in ("heartbeats", "reports", "ledger")),
                        15.0, "the anchor's subscriptions", step=0.02)
            v, adm = anode.verifier, anchor.admission

            # the worker is heard; an honest report gets in
            await m.gossip.publish("heartbeats", heartbeat(WORKER).raw)
            await until(lambda: WORKER.peer_id in adm.known, 15.0, "the heartbeat", step=0.02)
            good = report(SEEKER)
            await m.gossip.publish("reports", good.raw)
            await until(lambda: len(anchor.replica.ledger) == 1, 15.0, "the honest report", step=0.02)

            # replayed: the same signed bytes again (a new gossip message, the same envelope)
            await m.gossip.publish("reports", good.raw)
            # tampered: the honest report with its chain changed, signature kept
            await m.gossip.publish("reports", resign_as(good, SEEKER.public, {"latency_ms": [1.0]}))
            # forged: Mallory signs, claims to be the seeker
            forged = report(MALLORY, outcome="failure", culprit=0, latency_ms=[])
            await m.gossip.publish("reports", resign_as(forged, SEEKER.public))
            # oversize: a heartbeat far above its 4 KiB cap
            await m.gossip.publish("heartbeats", resign_as(heartbeat(WORKER), WORKER.public, {"name": "x" * 20000}))
            # garbage
            await m.gossip.publish("reports", b"\xc1not msgpack")
            # ledger data from a sender outside the anchor keyring
            delta = Signer(MALLORY).sign("ledger_delta", {"network": NET, "reports": [report(SEEKER).raw]})
            await m.gossip.publish("ledger", delta.raw)
            await until(lambda: sum(v.dropped.values()) >= 6, 15.0, "the gossip drops", step=0.02)
            # the tampered copy reuses the honest report's seq: a replay, dropped before any signature check
            assert dict(v.dropped) == {"replay": 2, "bad_signature": 1, "oversize": 1, "malformed": 1,
                                       "untrusted_sender": 1}
            # the seeker takes ledger data from its keyring anchor only: the honest report arrives (the anchor's
            # delta or a pull), Mallory's delta is dropped
            await until(lambda: vnode.verifier.dropped["untrusted_sender"] == 1
                        and len(victim.replica.ledger) == 1, 15.0, "the victim seeker's replica", step=0.02)
            assert victim.replica.ledger.get(SEEKER.public, good.seq) is not None

            # the direct stream: a forged and a duplicate report are refused with reasons in the ack
            lp = await m.links.connect(anode.peer_id)
            ack = await submit(m.host, lp, NET, [resign_as(forged, SEEKER.public), good.raw,
                                                 report(SEEKER, chain=["unheard-worker"]).raw])
            assert ack["results"] == ["bad_signature", "duplicate", "pending"]
            assert adm.dropped["bad_signature"] == 1 and adm.pending == 1

            # an oversize frame header on the ledger stream: counted, the stream dropped
            s = await open_stream(m.host, lp, LEDGER)
            await s.write(struct.pack(">I", 100 << 20) + b"x" * 16)
            fs = FramedStream(s)
            kind, body = await fs.read(10)
            assert kind == "error" and body["code"] == "bad_frame"
            await until(lambda: v.dropped["oversize"] == 2, 15.0, "the oversize frame", step=0.02)

            assert len(anchor.replica.ledger) == 1  # only the honest report is in the ledger
            assert len(victim.replica.ledger) == 1
            victim.close()
        anode.nursery.cancel_scope.cancel()
