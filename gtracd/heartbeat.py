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

import trio

from . import __version__
from .seeker.peerview import WorkerEntry, entry_from_heartbeat
from .wire.envelope import Signer

log = logging.getLogger("gtracd.heartbeat")
# py-libp2p's yamux splits a write into 64 KiB frames, each under its own lock: two tasks writing one pubsub
# stream at once interleave the frames of anything bigger, the receiver's protobuf parse fails and its stream
# handler dies (seen with 336 identities' heartbeats in one 84 KB batch). Every gossip payload stays < 48 KiB.
GOSSIP_PAYLOAD_MAX = 48 * 1024
BATCH_BYTES = GOSSIP_PAYLOAD_MAX - 1024


@dataclass
class Hosted:
    """One identity this process announces. `state()` returns the live fields (free_tokens, load)."""

    signer: Signer
    model: str
    start: int
    end: int
    total_layers: int
    addrs: list[str]
    name: str = ""
    state: object = None
    alive: object = None  # callable: False while this identity is down (the lab's crash/flapping peers)

    def body(self, network: str) -> dict:
        live = self.state() if self.state else {}
        b = {"network": network, "model": self.model, "start": self.start, "end": self.end,
             "addrs": self.addrs[:16], "free_tokens": int(live.get("free_tokens", 0)),
             "load": float(live.get("load", 0.0)), "version": __version__, "total_layers": self.total_layers}
        if self.name:
            b["name"] = self.name[:64]
        return b


def heartbeat_messages(node_signer: Signer, network: str, hosted: list[Hosted]) -> list[bytes]:
    """The gossip payloads for one heartbeat round: a plain heartbeat for one identity, else batches."""
    hosted = [h for h in hosted if h.alive is None or h.alive()]
    if not hosted:
        return []
    items = [h.signer.sign("heartbeat", h.body(network)).raw for h in hosted]
    if len(items) == 1 and hosted[0].signer.ident.public == node_signer.ident.public:
        return items
    out, cur, size = [], [], 0
    for it in items:
        if cur and (len(cur) == 256 or size + len(it) > BATCH_BYTES):
            out.append(node_signer.sign("heartbeat_batch", {"network": network, "items": cur}).raw)
            cur, size = [], 0
        cur.append(it)
        size += len(it) + 8
    if cur:
        out.append(node_signer.sign("heartbeat_batch", {"network": network, "items": cur}).raw)
    return out


async def publish_heartbeats(node, hosted: list[Hosted], period: float) -> None:
    signer = Signer(node.ident)
    while True:
        for msg in heartbeat_messages(signer, node.settings.network, hosted):
            await node.gossip.publish("heartbeats", msg)
        await trio.sleep(period)


def admit_heartbeats(node, data: bytes, now: float | None = None) -> list[WorkerEntry]:
    """Verify a heartbeat gossip payload (plain or batch); returns the workers it announces. Every drop is
    counted by reason in the node's verifier."""
    now = time.time() if now is None else now
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
    for e in envs:
        if e.body["network"] != node.settings.network:
            v.drop("wrong_network")
            continue
        w = entry_from_heartbeat(e, now)
        if w is None:
            v.drop("no_address")
            continue
        out.append(w)
    return out
