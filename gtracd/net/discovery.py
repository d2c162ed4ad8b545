"""Zero-configuration discovery on the local network (`--discover mdns`): the library's mDNS (libp2p/discovery/
mdns, on zeroconf: pure Python, so phones have it too), in a thin layer that works around what it gets wrong
for us (notes/realnet.md):

- scoped to the network: the service type is the library's private-network form `_p2p-<fp>._udp.local.`, `fp`
  derived from the network name, so daemons of other networks (and other libp2p apps) are never found;
- it advertises our announced addresses (net/addresses.announced), not the host's raw listening ones (a
  wildcard listener would advertise /ip4/0.0.0.0, which nobody can dial);
- its blocking calls (zeroconf registration stalls ~1.6 s) run in a worker thread, never on the trio loop;
- it writes what it hears into a scratch peer store of its own, never the host's (a LAN service can claim any
  peer id); found peers go to `Links` (learned, held within its bounds, dialled by its loop) from the
  zeroconf thread through the trio token, at most MAX_FOUND of them.

Trust is unchanged: a peer found this way is only a connection; ledger data still counts only from keyring
anchors, and heartbeats are verified as always.
"""

from __future__ import annotations

import hashlib
import logging

import trio
from libp2p.discovery.events.peerDiscovery import peerDiscovery
from libp2p.discovery.mdns.mdns import MDNSDiscovery
from libp2p.peer.peerstore import PeerStore

from .addresses import LOOPBACK, scope

log = logging.getLogger("gtracd.discovery")
MAX_FOUND = 64  # peers learned by mDNS (Links bounds what it holds too)


class _Scratch:
    """What MDNSDiscovery writes into, instead of the host's swarm and peer store: the library stores whatever
    addresses a LAN service claims for any peer id, and clears all of a peer's addresses when a service by
    that name goes away, so a LAN attacker could re-point or erase a real anchor's addresses there. Found peers
    reach us only through the discovery callback, into Links' bounded address book."""

    def __init__(self, peer_id):
        self.peer_id = peer_id
        self.peerstore = PeerStore()

    def get_peer_id(self):
        return self.peer_id


def service_type(network: str) -> str:
    """The network's mDNS service type (a DNS-SD service label is at most 15 bytes: `p2p-` + 10 hex)."""
    return f"_p2p-{hashlib.sha256(network.encode()).hexdigest()[:10]}._udp.local."


class LanDiscovery:
    def __init__(self, host, network: str, addrs, on_found):
        self.host, self.network, self.addrs, self.on_found = host, network, addrs, on_found
        self.found: dict[str, float] = {}  # peer id -> when (trio clock) first found
        self.started_at: float | None = None
        self.error: str | None = None

    def _advertised(self) -> tuple[int, list[str]]:
        addrs = [a.split("/p2p/", 1)[0] for a in self.addrs() if "/p2p-circuit" not in a]
        lan = [a for a in addrs if scope(a) != LOOPBACK] or addrs
        port = int(lan[0].split("/tcp/", 1)[1].split("/", 1)[0]) if lan and "/tcp/" in lan[0] else 4001
        return port, lan

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        token = trio.lowlevel.current_trio_token()
        me = self.host.get_id().to_base58()

        def found(info) -> None:  # a zeroconf thread: whatever a LAN service says, nothing escapes
            try:
                pid = info.peer_id.to_base58()
                if pid == me:
                    return
                addrs = [f"{a}/p2p/{pid}" if "/p2p/" not in str(a) else str(a) for a in list(info.addrs)[:8]]
                token.run_sync_soon(self._found, pid, addrs)
            except trio.RunFinishedError:
                pass
            except Exception as e:  # a malformed announcement: dropped
                log.debug("mDNS announcement dropped: %s", e)

        port, lan = self._advertised()
        self.started_at = trio.current_time()
        try:
            mdns = await trio.to_thread.run_sync(lambda: MDNSDiscovery(
                _Scratch(self.host.get_id()), port=port, listen_addrs=lan, service_type=service_type(self.network)))
        except Exception as e:  # no multicast here (some phones, containers), no zeroconf: say so, run without
            self.error = f"mDNS unavailable: {type(e).__name__}: {e}"
            log.warning("%s", self.error)
            task_status.started()
            return
        peerDiscovery.register_peer_discovered_handler(found)
        try:
            try:
                await trio.to_thread.run_sync(mdns.broadcaster.register)
            except Exception as e:  # we cannot announce ourselves (a name clash, a blocked loop): still listen
                self.error = f"mDNS announce failed: {type(e).__name__}: {e}"
                log.warning("%s", self.error)
            task_status.started()
            await trio.sleep_forever()
        finally:
            peerDiscovery.unregister_peer_discovered_handler(found)
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                await trio.to_thread.run_sync(_stop, mdns)

    def _found(self, pid: str, addrs: list[str]) -> None:
        if pid not in self.found and len(self.found) >= MAX_FOUND:
            return
        self.found.setdefault(pid, trio.current_time())
        try:
            self.on_found(addrs)
        except Exception as e:  # an address we cannot use: counted by Links, never fatal
            log.debug("mDNS peer %s: %s", pid, e)

    def status(self) -> dict:
        t0 = self.started_at or 0.0
        return {"mdns": {"found": len(self.found), "error": self.error,
                         "first_found_s": round(min(self.found.values()) - t0, 2) if self.found else None}}


def _stop(mdns) -> None:
    try:
        mdns.broadcaster.unregister()
        mdns.listener.stop()
        mdns.zeroconf.close()
    except Exception as e:  # shutting down anyway
        log.debug("mDNS stop: %s", e)
