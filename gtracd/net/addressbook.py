"""The dialler's address book (pure: no sockets, the caller passes the clock): which peers this daemon knows an
address for, which it stays connected to, and when a peer that failed to dial may be dialled again.

Addresses come from untrusted heartbeats, so everything is bounded: at most MAX_ANNOUNCED addresses per peer
id (the latest list heard replaces the last; `net/addresses.dial_order` orders them), at most
`max_addrs` peers known (the oldest learned, unkept, unconnected one is forgotten first) and `max_keep` kept.
Peers from the bootstrap list are pinned (a heartbeat cannot re-point them) and, like keyring anchors held
as `trusted`, kept outside the `max_keep` budget. A peer that fails to dial is retried after exponential
backoff with jitter (interval x 2^failures, capped at `max_backoff`, x0.5-1.5), so a thousand announced
addresses cost a bounded number of dials per minute.

Per peer:  unknown --learn--> known --hold--> kept --due(now)--> dialling --succeeded--> kept (connected)
                                                                           --failed---> backing off --due--> ...
           kept --release--> known --(forgotten when the book is full)--> unknown
`net/links.py` drives it: it dials what `due` returns and reports each outcome.
"""

from __future__ import annotations

import random

from ..errors import UserError
from .addresses import MAX_ANNOUNCED


def split_addr(addr: str) -> str:
    """The peer id at the end of a /.../p2p/ID multiaddr."""
    if "/p2p/" not in addr:
        raise UserError(f"peer multiaddr {addr!r} needs a /p2p/PEER_ID suffix")
    return addr.rsplit("/p2p/", 1)[1]


class AddressBook:
    def __init__(self, me: str, interval: float = 2.0, max_addrs: int = 1024, max_keep: int = 256,
                 max_backoff: float = 120.0, rng: random.Random | None = None):
        self.me = me
        self.interval, self.max_addrs, self.max_keep, self.max_backoff = interval, max_addrs, max_keep, max_backoff
        self.rng = rng or random.Random()
        self.addrs: dict[str, tuple[str, ...]] = {}  # peer id -> its multiaddrs (insertion order: oldest first)
        self._held: set[str] = set()  # kept, within max_keep
        self._trusted: set[str] = set()  # kept outside the budget: bootstrap peers, keyring anchors
        self.pinned: set[str] = set()  # address from the bootstrap list: never re-pointed
        self.fails: dict[str, int] = {}  # consecutive dial failures per peer
        self.next_try: dict[str, float] = {}  # clock time before which a failed peer is not redialled
        self.last_error: dict[str, str] = {}
        self.dial_failures = 0
        self.forgotten = 0

    # ------------------------------------------------------------------ events
    def learn(self, addr: str | list[str], keep: bool = False, connected=frozenset, pin: bool = False) -> str:
        """Remember `addr` (one multiaddr, or a peer's list: those naming another peer id than the first are
        dropped) for its peer id (a pinned peer keeps its addresses); with `keep`, hold it too; with `pin`, a
        bootstrap peer. When the book is full the oldest unkept peer not in `connected()` (asked only then) is
        forgotten first."""
        addrs = [addr] if isinstance(addr, str) else list(addr)[:MAX_ANNOUNCED]
        if not addrs:
            raise UserError("no address to learn")
        pid = split_addr(addrs[0])
        addrs = tuple(a for a in addrs if "/p2p/" in a and split_addr(a) == pid)
        if pid == self.me or (pid in self.pinned and not pin):
            return pid
        if pid not in self.addrs and len(self.addrs) >= self.max_addrs:
            self._forget_one(connected)
        if pid in self.addrs or len(self.addrs) < self.max_addrs:
            if pin and pid in self.pinned:  # two bootstrap addresses of one peer: both
                addrs = tuple(dict.fromkeys(self.addrs[pid] + addrs))[:MAX_ANNOUNCED]
            self.addrs[pid] = addrs
            if pin:
                self.pinned.add(pid)
                self.hold(pid, trusted=True)
            elif keep:
                self.hold(pid)
        return pid

    def hold(self, pid: str, trusted: bool = False) -> bool:
        """Stay connected to `pid`. Untrusted holds are bounded (False when `max_keep` are held already); no
        hold without a known address."""
        if pid not in self.addrs:
            return False
        if trusted:
            self._trusted.add(pid)
            self._held.discard(pid)
            return True
        if pid in self._held or pid in self._trusted:
            return True
        if len(self._held) >= self.max_keep:
            return False
        self._held.add(pid)
        return True

    def release(self, pid: str) -> None:
        """Stop redialling `pid` (e.g. a host with no live identity left); trusted peers stay."""
        self._held.discard(pid)

    def untrust(self, pid: str) -> None:
        """No longer a keyring anchor (a keyring update): back within the budget; a bootstrap peer stays kept."""
        if pid not in self.pinned:
            self._trusted.discard(pid)

    def failed(self, pid: str, now: float, error: str) -> None:
        self.dial_failures += 1
        self.last_error[pid] = error
        self.fails[pid] = self.fails.get(pid, 0) + 1
        self.next_try[pid] = now + self.backoff(pid)

    def succeeded(self, pid: str) -> None:
        for d in (self.last_error, self.fails, self.next_try):
            d.pop(pid, None)

    def _forget_one(self, connected) -> None:
        connected = connected()
        for pid in self.addrs:  # oldest first
            if pid not in self.kept and pid not in connected:
                del self.addrs[pid]
                for d in (self.fails, self.next_try, self.last_error):
                    d.pop(pid, None)
                self.forgotten += 1
                return

    # ------------------------------------------------------------------ questions
    @property
    def kept(self) -> frozenset[str]:
        return frozenset(self._held | self._trusted)

    @property
    def trusted(self) -> frozenset[str]:
        return frozenset(self._trusted)

    def backoff(self, pid: str) -> float:
        """Seconds until `pid` is redialled after its latest failure (exponential, with jitter)."""
        n = self.fails.get(pid, 0)
        return min(self.max_backoff, self.interval * 2 ** min(n, 16)) * self.rng.uniform(0.5, 1.5)

    def due(self, now: float, connected, cut) -> list[str]:
        """Kept peers to dial now: not connected, not cut, not backing off."""
        return [p for p in self._held | self._trusted
                if p not in connected and p not in cut and self.next_try.get(p, 0.0) <= now]

    def status(self, now: float, connected) -> dict:
        kept = self.kept
        return {"connected": len(connected), "keep": len(kept),
                "unreachable": sorted(p for p in kept if p not in connected),
                "dial_failures": self.dial_failures, "known": len(self.addrs), "forgotten": self.forgotten,
                "backing_off": sum(1 for t in self.next_try.values() if t > now)}
