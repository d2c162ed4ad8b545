"""A seeker in this process: the one way every caller starts one (the daemon's generate and serve, the Python
client, the demo, the lab's sweep, benchmarks). It runs the node; on a network (`s.bootstrap`) the follower
(heartbeats, ledger replica, outbox); and the dialler of hop sessions. The follower's files are closed after
the node (and every handler that writes them) has stopped."""

from __future__ import annotations

from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..control.follower import Follower, anchor_ids, pinned_view
from ..control.peerview import PeerView
from ..daemon.node import Node, running_node
from ..identity import Identity
from .hops import SeekerNet
from .readiness import readiness
from .service import routing_params

if TYPE_CHECKING:
    from gtracd.config import Settings


@dataclass
class RunningSeeker:
    node: Node
    view: PeerView
    cache: Follower | None  # the follower; None when workers were given by address only
    net: SeekerNet


@asynccontextmanager
async def running_seeker(name: str, ident: Identity, s: Settings, view: PeerView | None = None, events: str | None = None,
                         persistent_peerstore: bool = False, follow: bool | None = None):
    """`view`: the peer view to route from (default: pinned to `s.model`); `follow`: run the follower
    (default: on a network, i.e. `s.bootstrap` names anchors or `--discover` finds peers)."""
    view = pinned_view(s) if view is None else view
    follow = bool(s.bootstrap) or s.discover != "off" if follow is None else follow
    cache = None
    try:
        async with running_node("seeker", name, ident, s, events, persistent_peerstore) as node:
            if follow:
                cache = Follower(node, view, anchor_ids(s.keystore_path))
                await node.nursery.start(cache.run)
            params = routing_params(s)
            node.status_parts.append(lambda: {"readiness": readiness(view, params, s.mode)})
            yield RunningSeeker(node, view, cache, SeekerNet(
                node.host, view, node.relay.dial if node.relay else None, lambda pid: pid in node.links.trusted))
    finally:
        if cache is not None:
            cache.close()
