"""Length-prefixed frames on a libp2p stream: 4-byte big-endian length, then a msgpack frame.

Every read has a size cap (checked on the header, before buffering) and a deadline.
"""

from __future__ import annotations

import struct

import trio

from ..errors import Oversize
from ..wire import decode_frame, encode_frame
from ..wire.limits import DEFAULT_LIMITS, Limits

_HDR = struct.Struct(">I")


class FrameTooLarge(Oversize):
    """The length header exceeds the cap: the stream can no longer be framed and must be dropped."""


class StreamClosed(Exception):
    """The remote closed or reset the stream (EOF, reset, connection gone)."""


def _is_closed_exc(e: BaseException) -> bool:
    name = type(e).__name__
    return name in ("StreamEOF", "StreamReset", "StreamClosed", "StreamError", "MuxedStreamEOF",
                    "MuxedStreamReset", "MuxedStreamClosed", "MuxedConnUnavailable", "ClosedResourceError",
                    "BrokenResourceError", "EndOfChannel", "ConnectionResetError", "BrokenPipeError",
                    "SwarmException", "RawConnError", "IOException")


class FramedStream:
    def __init__(self, stream, limits: Limits = DEFAULT_LIMITS, chunk: int = 1 << 20):
        self.stream = stream
        self.limits = limits
        self.chunk = chunk
        self._buf = bytearray()
        self._send_lock = trio.Lock()
        self.bytes_in = self.bytes_out = 0  # frames' bytes, headers included (anti-entropy cost in status)

    @property
    def remote_peer(self) -> str:
        try:
            return self.stream.muxed_conn.peer_id.to_base58()
        except AttributeError:
            return "?"

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            try:
                data = await self.stream.read(max(self.chunk, n - len(self._buf)))
            except Exception as e:
                if _is_closed_exc(e):
                    raise StreamClosed(f"{type(e).__name__}: {e}") from None
                raise
            if not data:
                raise StreamClosed("EOF")
            self._buf += data

    async def read_raw(self, timeout: float, cap: int | None = None, admit=None) -> bytes:
        """One frame's bytes. `admit(n)`, if given, is awaited after the length header and before the body
        is read (a budget for bytes in flight is charged before they are buffered)."""
        cap = cap if cap is not None else self.limits.max_frame
        with trio.fail_after(timeout):
            await self._fill(4)
            (n,) = _HDR.unpack_from(self._buf)
            if n > cap:
                self._buf.clear()
                raise FrameTooLarge("frame", n, cap, "frame")
        if admit is not None:
            await admit(n)
        with trio.fail_after(timeout):
            await self._fill(4 + n)
        data = bytes(self._buf[4:4 + n])
        del self._buf[:4 + n]
        self.bytes_in += 4 + n
        return data

    async def read(self, timeout: float) -> tuple[str, dict]:
        return decode_frame(await self.read_raw(timeout), self.limits)

    async def write_raw(self, data: bytes, timeout: float) -> None:
        async with self._send_lock:
            with trio.fail_after(timeout):
                try:
                    await self.stream.write(_HDR.pack(len(data)) + data)
                    self.bytes_out += 4 + len(data)
                except Exception as e:
                    if _is_closed_exc(e):
                        raise StreamClosed(f"{type(e).__name__}: {e}") from None
                    raise

    async def send(self, kind: str, body: dict, timeout: float) -> None:
        await self.write_raw(encode_frame(kind, body, self.limits), timeout)

    async def quietly(self, op) -> None:
        """Shielded, bounded, best effort: used on teardown paths."""
        with trio.move_on_after(1) as cs:
            cs.shield = True
            try:
                await op()
            except Exception:
                pass

    async def close(self) -> None:
        await self.quietly(self.stream.close)

    async def reset(self) -> None:
        await self.quietly(self.stream.reset)
