"""A hop of a chain as the seeker keeps it: its session, every input it received this session (what a
replacement is replayed), its timings; the replay plan; and the dialler that opens hop sessions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import trio

from ..control.peerview import PeerView, WorkerEntry
from ..net.hop import TIMEOUT, HopFailed, HopSession
from ..net.host import answers
from ..net.links import dial_any
from ..net.relay import direct_to
from ..wire import encode_tensor
from .card import Cards

if TYPE_CHECKING:
    from libp2p.abc import IHost


@dataclass
class Chunk:
    pos: int
    n: int
    tokens: list[int] | None = None
    hidden: dict | None = None  # wire tensor {dtype, shape, data: bytes}
    verify: bool = False  # a speculative step's last hop: the token after every position (seeker.speculation)

    def body(self, sid: bytes, **extra) -> dict:
        """The prefill/step frame body that sends this chunk (a replay, `sample=False`, never verifies)."""
        b = {"session": sid, "pos": self.pos, **extra}
        if self.tokens is not None:
            b["tokens"] = self.tokens
        else:
            b["hidden"] = self.hidden
        if self.verify and extra.get("sample", True):
            b["verify"] = True
        return b

    def cut(self, pos: int) -> Chunk | None:
        """The part of this chunk before `pos` (None if nothing)."""
        if pos <= self.pos:
            return None
        if pos >= self.pos + self.n:
            return self
        k = pos - self.pos
        if self.tokens is not None:
            return Chunk(self.pos, k, tokens=self.tokens[:k])
        h = self.hidden
        row = len(h["data"]) // h["shape"][1]
        return Chunk(self.pos, k, hidden=encode_tensor(h["dtype"], [1, k, h["shape"][2]], bytes(h["data"][: k * row])))


@dataclass
class Hop:
    peer: WorkerEntry
    session: HopSession
    history: list[Chunk] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    compute_ms: list[float] = field(default_factory=list)
    call_ms: list[float] = field(default_factory=list)  # every call (prefills too)
    opened_at: float = field(default_factory=time.monotonic)  # like heartbeats' receipt: drained since then?

    def latency_ms(self) -> float | None:
        xs = self.step_ms or self.call_ms
        return sum(xs) / len(xs) if xs else None


class SeekerNet:
    """The seeker's libp2p host plus dialling of known workers, and the model cards verified through it."""

    def __init__(self, host: IHost, view: PeerView, circuit_dial=None, trusted_relay=lambda pid: False):
        self.host = host
        self.view = view
        self.circuit_dial = circuit_dial  # net/relay.RelayClient.dial: workers reachable only through a relay
        self.trusted_relay = trusted_relay  # a relay whose death excuses the worker behind it (our own anchors)
        self._ids: dict[str, object] = {}
        self.via: dict[str, str] = {}  # worker -> the relay its connection runs through
        self.cards = Cards()

    async def peer_id(self, pid: str, timeout: float = 10.0):
        if pid not in self._ids:
            w = self.view.workers[pid]
            self._ids[pid], relay = await dial_any(self.host, w.addrs or [w.addr], timeout, self.circuit_dial)
            if relay:
                self.via[pid] = relay
            else:
                self.via.pop(pid, None)
        return self._ids[pid]

    async def relay_lost(self, pid: str, wait: float = 2.0) -> bool:
        """After a hop through a relay failed: is the relay itself gone? Only a relay this seeker trusts (a keyring
        anchor or a bootstrap peer: a worker's own relay could play dead on its behalf), only while the worker
        has no direct connection (after DCUtR the session may run direct), and only when a fresh stream to
        the relay does not open within `wait` (a dead relay refuses the redial). Then the failure says nothing
        about the worker behind it."""
        relay = self.via.get(pid)
        return (relay is not None and self.trusted_relay(relay) and not direct_to(self.host, pid)
                and not await answers(self.host, relay, wait))

    async def session(self, pid: str, timeout: float) -> HopSession:
        try:
            lp = await self.peer_id(pid, timeout)
        except trio.TooSlowError:
            raise HopFailed(pid, "dial timed out", TIMEOUT) from None
        except Exception as e:  # unreachable, refused, or an unusable address it announced (UserError)
            self._ids.pop(pid, None)
            raise HopFailed(pid, f"cannot dial: {type(e).__name__}: {e}") from None
        return HopSession(self.host, lp, pid, relay_lost=(lambda: self.relay_lost(pid)) if pid in self.via else None)

    def forget(self, pid: str) -> None:
        self._ids.pop(pid, None)

    def forget_all(self) -> None:
        self._ids.clear()


def host_of(addr: str) -> str:
    """The host a worker's address dials (the libp2p peer id after /p2p/): many identities may share one."""
    return addr.rsplit("/p2p/", 1)[-1]


def merge(chunks: list[Chunk]) -> Chunk:
    """Consecutive chunks as one (same positions, concatenated inputs)."""
    if chunks[0].tokens is not None:
        return Chunk(chunks[0].pos, sum(c.n for c in chunks), tokens=[t for c in chunks for t in c.tokens])
    h0 = chunks[0].hidden
    return Chunk(chunks[0].pos, sum(c.n for c in chunks),
                 hidden=encode_tensor(h0["dtype"], [1, sum(c.n for c in chunks), h0["shape"][2]],
                                      b"".join(bytes(c.hidden["data"]) for c in chunks)))


def replay_plan(history: list[Chunk], exact_max: int) -> list[Chunk]:
    """What a replacement worker is fed. Short histories are replayed chunk by chunk exactly as first sent
    (bit-identical KV cache). Beyond `exact_max` chunks the single-token decode steps after the first
    prefill are merged into one chunk: the same positions and inputs in one batched pass, which bounds
    repair time; the cache then matches up to float rounding of batched vs single-row kernels (the tests
    check the finished text stays identical)."""
    if len(history) <= exact_max:
        return list(history)
    head, rest = history[0], history[1:]
    out = [head]
    run: list[Chunk] = []
    for c in rest:
        if run and run[-1].pos + run[-1].n != c.pos:
            out.append(merge(run))
            run = []
        run.append(c)
    if run:
        out.append(merge(run))
    return out
