"""Worker heartbeats: signed announcements of what a worker hosts (layer range, model fingerprint, listen
addresses, free cache tokens, load, version), published every `heartbeat_s`. A process hosting many
identities signs each identity's heartbeat with that identity and gossips them together in one
`heartbeat_batch` (signed by the process's own key), so 50 identities cost one gossip message, not 50.
Receivers verify the batch and every item on its own; liveness is "heard within node_timeout_s".
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ..net.addresses import MAX_ANNOUNCED
from ..version import __version__
from ..wire.batch import chunks
from ..wire.envelope import Signer
from .peerview import WorkerEntry, entry_from_heartbeat

if TYPE_CHECKING:
    from gtracd.daemon.node import Node

log = logging.getLogger("gtracd.heartbeat")
# py-libp2p's yamux splits a write into 64 KiB frames, each under its own lock: two tasks writing one pubsub
# stream at once interleave the frames of anything bigger, the receiver's protobuf parse fails and its stream
# handler dies (seen with 336 identities' heartbeats in one 84 KB batch). Every gossip payload stays < 48 KiB.
GOSSIP_PAYLOAD_MAX = 48 * 1024
BATCH_BYTES = GOSSIP_PAYLOAD_MAX - 1024


MEMBERSHIP = ("state", "target", "auto", "max_layers", "memory_mib")


@dataclass
class Hosted:
    """One identity this process announces. `state()` returns the live fields (free_tokens, load; for a
    self-placing or draining worker also start, end and the membership fields)."""

    signer: Signer
    model: str
    start: int
    end: int
    total_layers: int
    addrs: list[str] | object  # or a callable returning them (they change: relay circuits come and go)
    name: str = ""
    state: object = None
    alive: object = None  # callable: False while this identity is down (the lab's crash/flapping peers)

    def body(self, network: str) -> dict:
        live = self.state() if self.state else {}
        b = {"network": network, "model": self.model, "start": live.get("start", self.start),
             "end": live.get("end", self.end),
             "addrs": (self.addrs() if callable(self.addrs) else self.addrs)[:MAX_ANNOUNCED], "free_tokens": int(live.get("free_tokens", 0)),
             "load": float(live.get("load", 0.0)), "version": __version__, "total_layers": self.total_layers}
        if self.name:
            b["name"] = self.name[:64]
        b.update({k: live[k] for k in MEMBERSHIP if live.get(k) is not None})
        return b


def heartbeat_messages(node_signer: Signer, network: str, hosted: list[Hosted]) -> list[bytes]:
    """The gossip payloads for one heartbeat round: a plain heartbeat for one identity, else batches."""
    hosted = [h for h in hosted if h.alive is None or h.alive()]
    if not hosted:
        return []
    items = [h.signer.sign("heartbeat", h.body(network)).raw for h in hosted]
    if len(items) == 1 and hosted[0].signer.ident.public == node_signer.ident.public:
        return items
    return [node_signer.sign("heartbeat_batch", {"network": network, "items": c}).raw
            for c in chunks(items, 256, BATCH_BYTES)]


class Nudge:
    """Publish the next heartbeat now (a state change), and optionally faster for a while (joining)."""

    def __init__(self):
        self.event = trio.Event()
        self.sent = trio.Event()  # set (and replaced) after each round is published
        self.started = self.done = 0  # rounds begun / completed
        self.fast_s: float | None = None  # period while set (a joining worker announces itself quickly)

    def __call__(self) -> None:
        self.event.set()

    async def published_after_now(self) -> None:
        """Wait until a round that began after this call has been published (it carries the current state)."""
        want = self.started + 1
        while self.done < want:
            await self.sent.wait()


async def publish_heartbeats(node: Node, hosted: list[Hosted], period: float, nudge: Nudge | None = None) -> None:
    signer = Signer(node.ident)
    while True:
        if nudge is not None:
            nudge.event = trio.Event()
            nudge.started += 1
        for msg in heartbeat_messages(signer, node.settings.network, hosted):
            await node.gossip.publish("heartbeats", msg)
        if nudge is not None:
            nudge.done = nudge.started
            nudge.sent.set()
            nudge.sent = trio.Event()
        wait = period if nudge is None or nudge.fast_s is None else min(period, nudge.fast_s)
        with trio.move_on_after(wait):
            if nudge is not None:
                await nudge.event.wait()
            else:
                await trio.sleep_forever()


def admit_heartbeats(node: Node, data: bytes, now: float | None = None, verified=None) -> list[WorkerEntry]:
    """Verify a heartbeat gossip payload (plain or batch); returns the workers it announces, heard now on the
    monotonic clock (liveness never follows the wall clock). Every drop is counted by reason in the node's
    verifier; `now` (wall) checks the signed timestamps' skew. `verified()` is called once when any heartbeat
    in it is valid for this network, with or without an address (a worker waiting for its first relay slot
    announces none)."""
    now = time.time() if now is None else now
    seen = time.monotonic()
    v = node.verifier
    env = v.admit(data, now, kinds=("heartbeat", "heartbeat_batch"))
    if env is None:
        return []
    if env.body["network"] != node.settings.network:
        v.drop("wrong_network")
        return []
    envs = [env] if env.kind == "heartbeat" else [e for e in (v.admit(i, now, kinds=("heartbeat",))
                                                               for i in env.body["items"]) if e is not None]
    out = []
    called = False
    for e in envs:
        if e.body["network"] != node.settings.network:
            v.drop("wrong_network")
            continue
        if verified is not None and not called:
            verified()
            called = True
        w = entry_from_heartbeat(e, seen)
        if w is None:
            v.drop("no_address")
            continue
        out.append(w)
    return out
