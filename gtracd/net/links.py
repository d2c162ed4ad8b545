"""Who this daemon is connected to, and keeping it that way (pubsub never dials).

`Links` dials the bootstrap list and every address learned since (heartbeats, anchors), re-dials lost
connections, and holds a set of cut peers: the in-process link cuts the partition tests use (never dialled,
disconnected when found connected, and refused by the stream handlers).

Dial hygiene (addresses come from untrusted heartbeats: bounds, pinning, backoff) is the address book's
(net/addressbook.py, pure); this module is its driver.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import trio

from ..errors import UserError
from .addressbook import AddressBook, split_addr
from .addresses import CIRCUIT, dial_order, relay_of, scope
from .host import dial

if TYPE_CHECKING:
    from libp2p.abc import IHost

log = logging.getLogger("gtracd.links")


async def dial_any(host: IHost, addrs: list[str], timeout: float, circuit_dial=None) -> tuple[object, str | None]:
    """Connect to a peer at the first of its addresses that works, in `dial_order`: direct ones first, each
    bounded (by at most 2 s when it also offers a relay circuit and we can dial one) and all together by
    `timeout`; then up to two circuits, `timeout` each. Returns (libp2p ID, the relay's peer id or None when
    direct); ConnectionError saying what each attempt met."""
    order = dial_order(addrs)
    circuits = [a for a in order if scope(a) == CIRCUIT]
    direct_timeout = min(timeout, 2.0) if circuits and circuit_dial else timeout
    errors = []
    # the whole walk is bounded too: direct attempts share one `timeout`, then at most two circuits get one each
    with trio.move_on_after(timeout) as direct_phase:
        for a in order:
            if a in circuits:
                continue
            try:
                return await dial(host, a, direct_timeout), None
            except UserError as e:  # an unusable address it announced: try the next
                errors.append(str(e))
            except trio.TooSlowError:
                errors.append("timed out")
            except Exception as e:  # refused, unreachable, bad peer id...
                errors.append(f"{type(e).__name__}: {e}"[:160])
    if direct_phase.cancelled_caught:
        errors.append("timed out")
    for a in circuits[:2]:
        if circuit_dial is None:
            errors.append("a relay circuit (this daemon dials none)")
            break
        try:
            return await circuit_dial(a, timeout), split_addr(relay_of(a))
        except UserError as e:
            errors.append(str(e))
        except trio.TooSlowError:
            errors.append("timed out")
        except Exception as e:  # the relay refused (no reservation), is unreachable...
            errors.append(f"{type(e).__name__}: {e}"[:160])
    if errors and all(e == "timed out" for e in errors):
        raise trio.TooSlowError  # (a dial that only ever timed out is a timeout to its caller)
    raise ConnectionError("; ".join(dict.fromkeys(errors)) or "no usable address")


class Links:
    """The driver of an AddressBook (net/addressbook.py): dials what it says is due, reports each outcome, and
    keeps the cut set."""

    def __init__(self, host: IHost, bootstrap: list[str] = (), interval: float = 2.0, dial_timeout: float = 5.0,
                 max_addrs: int = 1024, max_keep: int = 256, max_backoff: float = 120.0):
        self.host = host
        self.interval = interval
        self.dial_timeout = dial_timeout
        self.me = host.get_id().to_base58()
        self.book = AddressBook(self.me, interval, max_addrs, max_keep, max_backoff)
        self.cut: set[str] = set()
        self._ids: dict[str, object] = {}
        self.on_connect: list = []  # callbacks(pid) when a kept peer (re)connects: e.g. sync at once after a heal
        self.circuit_dial = None  # async (circuit multiaddr, timeout) -> libp2p ID: set by net/relay.RelayClient
        self._was: set[str] = set()
        for a in bootstrap:
            self.book.learn(a, pin=True)

    # the book's state, read-only here (the book owns it)
    @property
    def addrs(self) -> dict[str, str]:
        return self.book.addrs

    @property
    def keep_ids(self) -> frozenset[str]:
        return self.book.kept

    @property
    def trusted(self) -> frozenset[str]:
        return self.book.trusted

    @property
    def fails(self) -> dict[str, int]:
        return self.book.fails

    @property
    def dial_failures(self) -> int:
        return self.book.dial_failures

    def learn(self, addr: str | list[str], keep: bool = False) -> str:
        forgotten = self.book.forgotten
        pid = self.book.learn(addr, keep, self.connected)
        if self.book.forgotten != forgotten:  # the book forgot a peer: so do we
            for gone in set(self._ids) - set(self.book.addrs):
                del self._ids[gone]
        return pid

    def hold(self, pid: str, trusted: bool = False) -> bool:
        """Stay connected to `pid` (bounded unless `trusted`: keyring anchors)."""
        return self.book.hold(pid, trusted)

    def release(self, pid: str) -> None:
        self.book.release(pid)

    def untrust(self, pid: str) -> None:
        self.book.untrust(pid)

    def allowed(self, pid: str) -> bool:
        return pid not in self.cut

    def connected(self) -> set[str]:
        return {p.to_base58() for p in self.host.get_connected_peers()}

    async def connect(self, pid: str):
        """The libp2p ID of `pid`, dialling it first if needed: its addresses in `dial_order` (direct ones
        first, each bounded; relay circuits last, when this daemon has a relay client). Raises ConnectionError
        when cut, unknown or unreachable at every address."""

        if pid in self.cut:
            raise ConnectionError(f"link to {pid} is cut")
        if pid in self._ids and pid in self.connected():
            return self._ids[pid]
        addrs = self.addrs.get(pid)
        if not addrs:
            raise ConnectionError(f"no address known for {pid}")
        try:
            self._ids[pid], _ = await dial_any(self.host, list(addrs), self.dial_timeout, self.circuit_dial)
        except trio.TooSlowError:
            self.book.failed(pid, time.monotonic(), "timed out")
            raise ConnectionError(f"cannot dial {pid}: timed out") from None
        except ConnectionError as e:
            self.book.failed(pid, time.monotonic(), str(e))
            raise ConnectionError(f"cannot dial {pid}: {e}") from None
        self.book.succeeded(pid)
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
            todo = self.book.due(time.monotonic(), now_connected, self.cut)
            async with trio.open_nursery() as n:
                for pid in todo:
                    n.start_soon(self._try, pid)
            now_connected = self.connected()
            kept = self.book.kept
            for pid in (now_connected & kept) - self._was:
                for cb in self.on_connect:
                    cb(pid)
            self._was = now_connected & kept
            if first:
                task_status.started()
                first = False
            # while links are cut, peers on the other side keep dialling us: drop them promptly
            await trio.sleep(0.25 if self.cut else self.interval)

    async def _try(self, pid: str) -> None:
        try:
            await self.connect(pid)
        except (ConnectionError, UserError) as e:  # addresses learned from heartbeats are untrusted input
            self.book.last_error[pid] = str(e)

    def status(self) -> dict:
        return {**self.book.status(time.monotonic(), self.connected()), "cut": sorted(self.cut), "at": time.time()}
