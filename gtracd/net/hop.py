"""Seeker side of one worker session: one long-lived stream, one request in flight at a time — a thin driver
of protocols/infer.HopStream, which decides what may be sent and what each frame read means.

A transport failure (EOF, reset, deadline) or a protocol violation raises HopFailed; an error frame from the
worker raises HopError(code). Both carry the peer id so the seeker can attribute the failure exactly.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import trio

from ..errors import DecodeError, GtracError
from ..protocols.infer import HopStream, NotOpen, Refusal, Violation
from ..wire.binding import binding_ok
from .framing import FramedStream, StreamClosed
from .host import open_stream
from .protocols import INFER, WRITE_TIMEOUT_S

if TYPE_CHECKING:
    from libp2p.abc import IHost

TIMEOUT, TRANSPORT, PROTOCOL = "timeout", "transport", "protocol"
FAILURES = (TIMEOUT, TRANSPORT, PROTOCOL)  # what went wrong, typed: blame decides on this, never on message text


class HopFailed(GtracError):
    """The hop did not answer as the protocol requires. `reason`: TIMEOUT (no answer, or no stream/dial, in
    time), TRANSPORT (unreachable, or the stream broke) or PROTOCOL (a malformed or misplaced frame)."""

    def __init__(self, peer: str, why: str, reason: str = TRANSPORT, relay_lost: bool = False):
        if reason not in FAILURES:
            raise ValueError(f"unknown hop failure reason {reason!r}")
        self.peer, self.reason, self.relay_lost = peer, reason, relay_lost
        super().__init__(f"hop {peer[-8:]} failed: {why}" + (" (its relay is gone)" if relay_lost else ""))


LATE_REFUSAL = 0.5  # a refusal later than this share of the call's deadline is no refusal (seeker/blame.py)


class HopError(GtracError):
    """The worker answered with an error frame (its code one of wire.kinds.ERROR_CODES: the schema refuses
    any other). `late`: it came after LATE_REFUSAL of the call's deadline — a worker that stalls and then says
    no has cost the seeker the wait, whatever the code says. `request`: what it answered (open, prefill, ...).
    `local`: raised by the seeker itself, never said by the worker (seeker/blame.py blames nobody)."""

    def __init__(self, peer: str, code: str, message: str, retry_after_s: float | None = None, late: bool = False,
                 request: str | None = None, local: bool = False):
        self.peer, self.code, self.retry_after_s, self.late = peer, code, retry_after_s, late
        self.request, self.local = request, local
        super().__init__(f"worker {peer[-8:]} refused ({code}): {message}")


class HopSession:
    def __init__(self, host: IHost, peer_id, peer: str, relay_lost=None):
        self.host = host
        self.relay_lost = relay_lost  # async () -> bool: reached through a relay that is gone now (net.relay)
        self.peer_id = peer_id  # libp2p ID
        self.peer = peer  # base58
        self.fs: FramedStream | None = None
        self.machine = HopStream()  # the protocol state of the stream `fs` (a new one per stream)
        self.opened = False
        self.max_length: int | None = None
        self.step_bytes = 0  # decode steps' frames both ways (request and result, headers included)
        self.steps = 0  # decode steps answered (a verify step counts once)

    async def connect(self, timeout: float) -> None:
        try:
            self.fs = FramedStream(await open_stream(self.host, self.peer_id, INFER, timeout))
        except trio.TooSlowError:
            raise HopFailed(self.peer, "stream open timed out", TIMEOUT, await self._relay_lost()) from None
        except Exception as e:
            raise HopFailed(self.peer, f"cannot open stream: {type(e).__name__}: {e}",
                            relay_lost=await self._relay_lost()) from None
        self.machine = HopStream()

    async def request(self, kind: str, body: dict, timeout: float) -> dict:
        """Send a request and return its reply's body (HopError on a refusal, HopFailed on anything else)."""
        t0 = time.perf_counter()
        if self.fs is None:
            await self.connect(timeout)
        try:
            self.machine.send(kind, body)  # (another ProtocolError: a bug of ours, not the worker's)
        except NotOpen as e:
            raise HopError(self.peer, "unknown_session", str(e), request=kind, local=True) from None
        before = self.fs.bytes_in + self.fs.bytes_out
        try:
            try:
                await self.fs.send(kind, body, min(timeout, WRITE_TIMEOUT_S))
            except StreamClosed:
                await self._last_words()  # a worker that left may have said why first (`draining`)
                raise
            rkind, rbody = await self.fs.read(timeout)
        except trio.TooSlowError:
            await self.abort()
            raise HopFailed(self.peer, f"no answer to {kind} within {timeout:.1f}s", TIMEOUT,
                            await self._relay_lost()) from None
        except StreamClosed as e:
            await self.abort()
            raise HopFailed(self.peer, f"stream closed ({e})", relay_lost=await self._relay_lost()) from None
        except DecodeError as e:
            await self.abort()
            raise HopFailed(self.peer, f"sent a malformed frame ({e})", PROTOCOL) from None
        if kind == "step":  # what one token costs on this hop's link (bench wan, provenance)
            self.step_bytes += self.fs.bytes_in + self.fs.bytes_out - before
            self.steps += 1
        ev = self.machine.receive(rkind, rbody)
        if isinstance(ev, Refusal):
            late = time.perf_counter() - t0 > LATE_REFUSAL * timeout
            raise HopError(self.peer, ev.code, ev.message, ev.retry_after_s, late, request=kind)
        if isinstance(ev, Violation):
            await self.abort()
            raise HopFailed(self.peer, ev.why, PROTOCOL)
        return ev.body

    async def _relay_lost(self) -> bool:
        if self.relay_lost is None:
            return False
        with trio.CancelScope(shield=True):  # bounded inside (net.host.answers)
            return await self.relay_lost()

    async def _last_words(self) -> None:
        """The stream broke on our write: if the worker sent an error frame before it closed (a drain cut our
        session), raise that instead of a transport failure."""
        try:
            rkind, rbody = await self.fs.read(0.5)
        except (trio.TooSlowError, StreamClosed, DecodeError):
            return
        ev = self.machine.receive(rkind, rbody)
        if isinstance(ev, Refusal):
            await self.abort()
            raise HopError(self.peer, ev.code, ev.message, ev.retry_after_s)

    async def open(self, body: dict, timeout: float) -> None:
        """Open the session; with a nonce in `body`, the identity must prove it is served at this host."""
        res = await self.request("open", body, timeout)
        self.opened = True
        if body.get("nonce") is not None and not binding_ok(self.peer, self.peer_id.to_base58(), body["nonce"],
                                                            body["session"], res.get("proof")):
            raise HopError(self.peer, "unbound", "no valid proof that this identity is served at the dialled host")
        self.max_length = res.get("max_length", body["max_length"])

    async def timed(self, kind: str, body: dict, timeout: float) -> tuple[dict, float]:
        t0 = time.perf_counter()
        res = await self.request(kind, body, timeout)
        return res, (time.perf_counter() - t0) * 1e3

    async def cancel(self, sid: bytes) -> None:
        """Best effort, bounded, shielded: used on Ctrl-C and errors."""
        if self.fs is not None and not self.machine.is_broken:
            self.machine.send("cancel", {"session": sid})
            await self.fs.quietly(lambda: self.fs.send("cancel", {"session": sid}, 1.0))
        await self.abort()

    async def close(self, sid: bytes) -> None:
        if self.fs is None:
            return
        if self.opened and not self.machine.is_broken:
            self.machine.send("close", {"session": sid})
            await self.fs.quietly(lambda: self.fs.send("close", {"session": sid}, 1.0))
        await self.fs.close()
        self.fs = None

    async def abort(self) -> None:
        if self.fs is not None:
            self.machine.broken()
            await self.fs.reset()
            self.fs = None


async def fetch_info(host: IHost, peer_id, peer: str, timeout: float = 5.0) -> dict:
    hs = HopSession(host, peer_id, peer)
    try:
        return await hs.request("info", {}, timeout)
    finally:
        await hs.close(b"")
