"""Who this daemon is connected to, and keeping it that way (pubsub never dials).

`Links` dials the bootstrap list and every address learned since (heartbeats, anchors), re-dials lost
connections every `interval`, and holds a set of cut peers: the in-process link cuts the partition tests
use (never dialled, disconnected when found connected, and refused by the stream handlers).
"""

from __future__ import annotations

import logging
import time

import trio

from ..errors import UserError

log = logging.getLogger("gtracd.links")


def split_addr(addr: str) -> str:
    """The peer id at the end of a /.../p2p/ID multiaddr."""
    if "/p2p/" not in addr:
        raise UserError(f"peer multiaddr {addr!r} needs a /p2p/PEER_ID suffix")
    return addr.rsplit("/p2p/", 1)[1]


class Links:
    def __init__(self, host, bootstrap: list[str] = (), interval: float = 2.0, dial_timeout: float = 5.0):
        self.host = host
        self.interval = interval
        self.dial_timeout = dial_timeout
        self.addrs: dict[str, str] = {}  # peer id -> multiaddr
        self.keep_ids: set[str] = set()  # peers to stay connected to
        self.cut: set[str] = set()
        self.dial_failures = 0
        self.last_error: dict[str, str] = {}
        self._ids: dict[str, object] = {}
        self.on_connect: list = []  # callbacks(pid) when a kept peer (re)connects: e.g. sync at once after a heal
        self._was: set[str] = set()
        self.me = host.get_id().to_base58()
        for a in bootstrap:
            self.learn(a, keep=True)

    def learn(self, addr: str, keep: bool = False) -> str:
        pid = split_addr(addr)
        if pid != self.me:
            self.addrs[pid] = addr
            if keep:
                self.keep_ids.add(pid)
        return pid

    def allowed(self, pid: str) -> bool:
        return pid not in self.cut

    def connected(self) -> set[str]:
        return {p.to_base58() for p in self.host.get_connected_peers()}

    async def connect(self, pid: str):
        """The libp2p ID of `pid`, dialling it first if needed. Raises ConnectionError when cut or unknown."""
        from .host import dial

        if pid in self.cut:
            raise ConnectionError(f"link to {pid} is cut")
        if pid in self._ids and pid in self.connected():
            return self._ids[pid]
        addr = self.addrs.get(pid)
        if addr is None:
            raise ConnectionError(f"no address known for {pid}")
        try:
            self._ids[pid] = await dial(self.host, addr, self.dial_timeout)
        except UserError:
            raise
        except Exception as e:  # refused, unreachable, timed out (TooSlowError), bad peer id...
            self.dial_failures += 1
            self.last_error[pid] = f"{type(e).__name__}: {e}"
            raise ConnectionError(f"cannot dial {pid}: {type(e).__name__}") from None
        self.last_error.pop(pid, None)
        return self._ids[pid]

    async def apply_cuts(self, pids: set[str]) -> None:
        """Make `pids` the cut set (empty: heal every link). The set is shared with the gossip filter."""
        self.cut.clear()
        self.cut.update(pids)
        for pid in self.cut & self.connected():
            await self._drop(pid)

    async def _drop(self, pid: str) -> None:
        from libp2p.peer.id import ID

        with trio.move_on_after(2):
            try:
                await self.host.disconnect(ID.from_base58(pid))
            except Exception:
                pass

    async def keep(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Dial what we should be connected to, drop what is cut; every `interval` seconds."""
        first = True
        while True:
            now_connected = self.connected()
            for pid in list(self.cut & now_connected):
                await self._drop(pid)
            todo = [p for p in self.keep_ids if p not in now_connected and p not in self.cut]
            async with trio.open_nursery() as n:
                for pid in todo:
                    n.start_soon(self._try, pid)
            now_connected = self.connected()
            for pid in (now_connected & self.keep_ids) - self._was:
                for cb in self.on_connect:
                    cb(pid)
            self._was = now_connected & self.keep_ids
            if first:
                task_status.started()
                first = False
            # while links are cut, peers on the other side keep dialling us: drop them promptly
            await trio.sleep(0.25 if self.cut else self.interval)

    async def _try(self, pid: str) -> None:
        try:
            await self.connect(pid)
        except (ConnectionError, UserError) as e:  # addresses learned from heartbeats are untrusted input
            self.last_error[pid] = str(e)

    def status(self) -> dict:
        now_connected = self.connected()
        return {"connected": len(now_connected), "keep": len(self.keep_ids),
                "unreachable": sorted(p for p in self.keep_ids if p not in now_connected),
                "cut": sorted(self.cut), "dial_failures": self.dial_failures, "at": time.time()}
