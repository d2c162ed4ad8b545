"""Gossipsub for control traffic: heartbeats, trust reports, ledger deltas — topics namespaced by network.

py-libp2p 0.8.1 defaults that are wrong for us, overridden here (see ../shared/notes/libp2p.md):
heartbeat_interval 120 s -> 1 s; spam protection (drops > 10 msg/s per forwarder) off; adaptive gossip
(silently stretched the heartbeat to 30 s) off; eclipse protection (wants 3 distinct IPs in a mesh, which a
loopback or home network never has) off; degree/degree_low/degree_high set. Strict signing stays on. Pubsub
never dials, so `Links` keeps the connections. Gossip is lossy: anything that must arrive also goes over a
stream (reports to an anchor, anti-entropy).

py-libp2p re-raises when a message's signing key does not parse (an RSA key of junk; on a phone, any
secp256k1 key, since coincurve is a stand-in there), inside a service task: one message from any peer took
the whole daemon down. `GuardedPubsub` checks each incoming message's signature itself first and turns any
failure while handling one message into a counted drop (`gossip.rejected` in the status). It also verifies each
message once: the library verified every copy gossipsub delivered (one per mesh peer) before noticing it had seen
it, and the first copy twice.

Every gossip RPC carries the sender's signed peer record, and py-libp2p verifies it and writes it to the
peerstore (sqlite, for a persistent one) on every RPC, twice for control messages: 16 % of a busy anchor's
CPU. `remember_peer_records` makes that once per (host, peer, record bytes) every RECORD_REFRESH_S: the same
bytes from the same peer verify the same way, and the peerstore already holds them.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections import Counter
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from libp2p.abc import IHost

log = logging.getLogger("gtracd.gossip")

TOPIC_NAMES = ("heartbeats", "reports", "ledger")
MAX_GOSSIP = 900 * 1024  # payloads >= 1 MiB are silently dropped by py-libp2p: refuse before that


def topic(network: str, name: str) -> str:
    return f"/gtrac/{network}/{name}/1"


@dataclass(frozen=True)
class GossipParams:
    degree: int = 6
    degree_low: int = 4
    degree_high: int = 12
    heartbeat_interval: int = 1
    gossip_window: int = 3
    gossip_history: int = 5
    time_to_live: int = 30


class Gossip:
    """Publish and receive on the network's topics. Handlers are called with (data, origin peer id str)."""

    def __init__(self, pubsub, router, network: str):
        self.pubsub = pubsub
        self.router = router
        self.network = network
        self.sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.publish_errors = 0
        self.blocked: set[str] = set()  # origins whose messages are ignored (the links' cut set)

    def topic(self, name: str) -> str:
        return topic(self.network, name)

    async def publish(self, name: str, data: bytes) -> bool:
        if len(data) > MAX_GOSSIP:
            raise ValueError(f"gossip payload of {len(data)} bytes exceeds {MAX_GOSSIP}")
        try:
            with trio.fail_after(5):
                await self.pubsub.publish(self.topic(name), data)
        except (trio.TooSlowError, Exception) as e:  # gossip is best effort: counted, never fatal
            self.publish_errors += 1
            log.debug("publish on %s failed: %r", name, e)
            return False
        self.sent[name] += 1
        return True

    async def serve(self, name: str, handler, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe and feed every message to `handler(data, origin)`; runs until cancelled."""
        sub = await self.pubsub.subscribe(self.topic(name))
        me = self.pubsub.host.get_id().to_bytes()
        task_status.started()
        async for msg in sub:
            if msg.from_id == me:
                continue  # our own publication, delivered back to us
            origin = _origin(msg.from_id)
            if origin in self.blocked:
                continue
            self.received[name] += 1
            try:
                await handler(bytes(msg.data), origin)
            except Exception:  # a handler bug must not stop the subscription
                log.exception("gossip handler for %s failed", name)

    def peers(self, name: str) -> int:
        return len(self.pubsub.peer_topics.get(self.topic(name), ()))

    def mesh(self, name: str) -> int:
        return len(self.router.mesh.get(self.topic(name), ()))


def _origin(from_id: bytes) -> str:
    from libp2p.peer.id import ID

    try:
        return ID(from_id).to_base58()
    except Exception:
        return "?"


RECORD_REFRESH_S = 600.0  # re-consume an unchanged peer record this often (its peerstore TTL is 2 h)
RECORDS_KEPT = 4096  # per host


def remember_peer_records() -> None:
    """Install the memo around py-libp2p's `maybe_consume_signed_record` where pubsub calls it (once)."""

    from libp2p.pubsub import gossipsub, pubsub, utils

    real = utils.maybe_consume_signed_record
    if getattr(pubsub.maybe_consume_signed_record, "gtracd_memo", False):
        return
    memo: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # host -> {(peer, record): consumed at}

    def consume(msg, host: IHost, peer_id=None) -> bool:
        if not msg.HasField("senderRecord"):
            return True
        try:
            seen = memo.setdefault(host, {})
        except TypeError:  # a host that cannot be weakly referenced: no memo
            return real(msg, host, peer_id)
        key = (peer_id.to_bytes() if peer_id is not None else b"", bytes(msg.senderRecord))
        now = time.monotonic()
        t = seen.get(key)
        if t is not None and now - t < RECORD_REFRESH_S:
            return True
        ok = real(msg, host, peer_id)
        if ok:  # only what verified is remembered
            seen.pop(key, None)
            seen[key] = now
            while len(seen) > RECORDS_KEPT:
                del seen[next(iter(seen))]
        return ok

    consume.gtracd_memo = True
    pubsub.maybe_consume_signed_record = consume
    gossipsub.maybe_consume_signed_record = consume


_CHECKED: list = [None]  # the message GuardedPubsub.push_msg has just verified (or signed itself)


def verify_once() -> None:
    """Install, where py-libp2p's push_msg calls it (once), a signature check that passes the message
    GuardedPubsub verified a moment before: the library verified it again. Set and used within one synchronous
    step (nothing in push_msg awaits before its check), and only for that very object."""
    from libp2p.pubsub import pubsub

    if getattr(pubsub.signature_validator, "gtracd_once", False):
        return
    real = pubsub.signature_validator

    def check(msg) -> bool:
        if msg is _CHECKED[0]:
            _CHECKED[0] = None
            return True
        return real(msg)

    check.gtracd_once = True
    pubsub.signature_validator = check


def guarded_pubsub_class():
    """Pubsub whose handling of one incoming message can never raise into its service task, and which verifies
    each message once: gossipsub delivers a message once per mesh peer, and the library verified every copy
    before noticing it had seen it, then the first copy a second time."""
    from libp2p.pubsub.pubsub import Pubsub
    from libp2p.pubsub.validators import signature_validator

    verify_once()

    class GuardedPubsub(Pubsub):
        rejected = 0

        async def push_msg(self, msg_forwarder, msg) -> None:
            if msg_forwarder != self.my_id:  # someone else's message: its key and signature must check out
                if self._is_msg_seen(msg):
                    return  # another copy of one already verified and delivered
                try:
                    ok = signature_validator(msg)
                except Exception as e:  # an unparseable key, a stand-in key type, a malformed id
                    log.debug("gossip message with a bad signing key dropped: %r", e)
                    ok = False
                if not ok:
                    self.rejected += 1
                    return
            _CHECKED[0] = msg  # verified above, or our own publication, signed just now
            try:
                await super().push_msg(msg_forwarder, msg)
            except Exception as e:  # whatever else one message makes the library raise: dropped, counted
                self.rejected += 1
                log.debug("gossip message dropped: the library raised %r", e)

        async def continuously_read_stream(self, stream) -> None:
            # The library reads a peer's stream in the host's nursery and hands each message to a task in the
            # pubsub service's. When the service stops first (every shutdown closes pubsub before the host), a
            # message read in between finds that nursery closed and the RuntimeError ended the whole daemon
            # with an error at exit. The service is gone: the message has nowhere to go, and the reader stops.
            try:
                await super().continuously_read_stream(stream)
            except RuntimeError as e:
                if "closed to new arrivals" not in str(e):
                    raise
                log.debug("gossip reader stopped: the pubsub service has shut down")

    return GuardedPubsub


@asynccontextmanager
async def running_gossip(host: IHost, network: str, params: GossipParams = GossipParams()):
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
    from libp2p.tools.anyio_service import background_trio_service

    router = GossipSub(
        protocols=[PROTOCOL_ID_V11, PROTOCOL_ID], degree=params.degree, degree_low=params.degree_low,
        degree_high=params.degree_high, time_to_live=params.time_to_live, gossip_window=params.gossip_window,
        gossip_history=params.gossip_history, heartbeat_initial_delay=0.1,
        heartbeat_interval=params.heartbeat_interval, adaptive_gossip_enabled=False, spam_protection_enabled=False,
        eclipse_protection_enabled=False)
    remember_peer_records()
    pubsub = guarded_pubsub_class()(host, router, strict_signing=True, max_inbound_rpc_size=2 * 1024 * 1024)
    async with background_trio_service(pubsub):
        async with background_trio_service(router):
            with trio.fail_after(10):
                await pubsub.wait_until_ready()
            yield Gossip(pubsub, router, network)
