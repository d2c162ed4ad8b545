"""Who this daemon is connected to, and keeping it that way (pubsub never dials).

`Links` dials the bootstrap list and every address learned since (heartbeats, anchors), re-dials lost
connections, and holds a set of cut peers: the in-process link cuts the partition tests use (never dialled,
disconnected when found connected, and refused by the stream handlers).

Dial hygiene (addresses come from untrusted heartbeats): one address per peer id, at most `max_addrs` peers
known and `max_keep` kept (the oldest learned, unkept, unconnected ones are forgotten first); a peer that
fails to dial is retried after exponential backoff with jitter (interval x 2^failures, capped at
`max_backoff`, x0.5-1.5), so a thousand announced addresses cost a bounded number of dials per minute.
"""

from __future__ import annotations

import logging
import random
import time

import trio

from ..errors import UserError
from .host import dial

log = logging.getLogger("gtracd.links")


def split_addr(addr: str) -> str:
    """The peer id at the end of a /.../p2p/ID multiaddr."""
    if "/p2p/" not in addr:
        raise UserError(f"peer multiaddr {addr!r} needs a /p2p/PEER_ID suffix")
    return addr.rsplit("/p2p/", 1)[1]


class Links:
    def __init__(self, host, bootstrap: list[str] = (), interval: float = 2.0, dial_timeout: float = 5.0,
                 max_addrs: int = 1024, max_keep: int = 256, max_backoff: float = 120.0):
        self.host = host
        self.interval = interval
        self.dial_timeout = dial_timeout
        self.max_addrs, self.max_keep, self.max_backoff = max_addrs, max_keep, max_backoff
        self.addrs: dict[str, str] = {}  # peer id -> multiaddr (insertion order: oldest first)
        self.keep_ids: set[str] = set()  # peers to stay connected to
        self.fails: dict[str, int] = {}  # consecutive dial failures per peer
        self.next_try: dict[str, float] = {}  # monotonic time before which a failed peer is not redialled
        self.forgotten = 0
        self.pinned: set[str] = set()  # peers whose address came from the bootstrap list: never re-pointed
        self.cut: set[str] = set()
        self.dial_failures = 0
        self.last_error: dict[str, str] = {}
        self._ids: dict[str, object] = {}
        self.on_connect: list = []  # callbacks(pid) when a kept peer (re)connects: e.g. sync at once after a heal
        self._was: set[str] = set()
        self.me = host.get_id().to_base58()
        for a in bootstrap:
            self.pinned.add(self.learn(a, keep=True))

    def learn(self, addr: str, keep: bool = False) -> str:
        pid = split_addr(addr)
        if pid != self.me and pid not in self.pinned:  # a heartbeat cannot re-point an anchor or a host we know
            if pid not in self.addrs and len(self.addrs) >= self.max_addrs:
                self._forget_one()
            if pid in self.addrs or len(self.addrs) < self.max_addrs:
                self.addrs[pid] = addr
                if keep:
                    self.hold(pid)
        return pid

    def hold(self, pid: str) -> bool:
        """Stay connected to `pid` (bounded: False when `max_keep` peers are kept already, or no address is
        known for it)."""
        if pid in self.keep_ids:
            return True
        if len(self.keep_ids) >= self.max_keep or pid not in self.addrs:
            return False
        self.keep_ids.add(pid)
        return True

    def _forget_one(self) -> None:
        connected = self.connected()
        for pid in self.addrs:  # oldest first
            if pid not in self.keep_ids and pid not in connected:
                del self.addrs[pid]
                for d in (self.fails, self.next_try, self.last_error, self._ids):
                    d.pop(pid, None)
                self.forgotten += 1
                return

    def backoff(self, pid: str) -> float:
        """Seconds until `pid` is redialled after its latest failure (exponential, with jitter)."""
        n = self.fails.get(pid, 0)
        return min(self.max_backoff, self.interval * 2 ** min(n, 16)) * random.uniform(0.5, 1.5)

    def allowed(self, pid: str) -> bool:
        return pid not in self.cut

    def connected(self) -> set[str]:
        return {p.to_base58() for p in self.host.get_connected_peers()}

    async def connect(self, pid: str):
        """The libp2p ID of `pid`, dialling it first if needed. Raises ConnectionError when cut or unknown."""

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
            self.fails[pid] = self.fails.get(pid, 0) + 1
            self.next_try[pid] = time.monotonic() + self.backoff(pid)
            raise ConnectionError(f"cannot dial {pid}: {type(e).__name__}") from None
        self.last_error.pop(pid, None)
        self.fails.pop(pid, None)
        self.next_try.pop(pid, None)
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
            now = time.monotonic()
            todo = [p for p in self.keep_ids if p not in now_connected and p not in self.cut
                    and self.next_try.get(p, 0.0) <= now]
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
                "cut": sorted(self.cut), "dial_failures": self.dial_failures, "known": len(self.addrs),
                "forgotten": self.forgotten, "backing_off": sum(1 for t in self.next_try.values() if t > time.monotonic()),
                "at": time.time()}
