"""The inference session protocol (/gtrac/infer/1.0.0) as two pure state machines (the h11 model): no I/O.

    seeker (HopStream)                          worker (WorkerStream), one per stream
    info                                   ->   info_reply
    card                                   ->   card_index {weights, files}
    card_part {name, offset}               ->   card_data {name, offset, data}
    open {session, model, start, end, ...} ->   opened {session, ...}
    prefill {session, pos, ...}            ->   result {session, cached, hidden | token, ...}
    step {session, pos, ...}               ->   result
    cancel {session}  /  close {session}        (no reply: the session is freed)
    any request                            ->   error {code, message, session?, retry_after_s?}

One request is in flight per stream and every request but cancel/close gets exactly one reply: its own kind
or `error` (a refusal: the stream stays usable). Anything else is a protocol violation: the seeker drops the
stream and blames the worker (seeker/blame.py); the worker answers a malformed or misplaced frame with an
`error` and keeps serving. Sessions live on the stream that opened them; a stream's end frees them all.

Drivers: worker/main.py feeds each frame the reader decoded to `WorkerStream.receive` and acts on the event
it returns; net/hop.py asks `HopStream.send` before writing a request and feeds every frame read to
`HopStream.receive`.
"""

from __future__ import annotations

from dataclasses import dataclass

REPLIES = {"info": "info_reply", "card": "card_index", "card_part": "card_data", "open": "opened", "prefill": "result",
           "step": "result"}
QUERIES = ("info", "card", "card_part")
NO_REPLY = ("cancel", "close")
EXTEND = ("prefill", "step")


class ProtocolError(Exception):
    """A request this side must not send now (a driver's bug, never the peer's)."""


class NotOpen(ProtocolError):
    """prefill / step of a session not open on this stream (e.g. the stream was replaced): the driver treats
    it as the worker's `unknown_session` would be (open it again, replay), without asking."""


# ---------------------------------------------------------------------------------------------- worker side
@dataclass(frozen=True)
class Query:
    """info / card / card_part: answer with REPLIES[kind]."""

    kind: str
    body: dict


@dataclass(frozen=True)
class Open:
    """Admit the session (then `WorkerStream.opened`) and answer `opened`, or refuse with an error."""

    session: bytes
    body: dict


@dataclass(frozen=True)
class Extend:
    """prefill / step of an open session: compute and answer `result`. `handle` is what the driver attached
    when it opened the session."""

    kind: str
    session: bytes
    body: dict
    handle: object


@dataclass(frozen=True)
class End:
    """cancel / close of an open session: free it (`handle`); no answer."""

    session: bytes
    handle: object
    cancelled: bool


@dataclass(frozen=True)
class Reject:
    """Answer with an `error` frame (code, message, the session if any). `ended`: the handle of a session
    this refusal ends (a cancelled one), to free."""

    code: str
    message: str
    session: bytes | None = None
    ended: object = None


IGNORE = None  # cancel / close of a session this stream does not hold (already gone): nothing to do


class WorkerStream:
    """One inference stream, the worker's side: which sessions it holds (each with the driver's handle) and
    which of them were cancelled out of band (a `cancel` seen by the reader while a step computes)."""

    def __init__(self):
        self.sessions: dict[bytes, object] = {}
        self._cancelled: set[bytes] = set()
        self.gone = False  # the seeker's side ended (read EOF or reset): work in progress may stop

    def receive(self, kind: str, body) -> Query | Open | Extend | End | Reject | None:
        """What a frame asks for. `kind` "_bad" is a frame that did not decode (`body` the DecodeError)."""
        if kind == "_bad":
            field = getattr(body, "field", None) or ""
            return Reject("bad_tensor" if "hidden" in field else "bad_frame", str(body))
        sid = body.get("session") if isinstance(body, dict) else None
        if kind in QUERIES:
            return Query(kind, body)
        if kind == "open":
            if sid in self.sessions:
                return Reject("bad_frame", "session already open on this stream", sid)
            return Open(sid, body)
        if kind in EXTEND:
            if sid not in self.sessions:
                return Reject("unknown_session", "session not opened on this stream", sid)
            if sid in self._cancelled:
                return self._reject_cancelled(sid, "session was cancelled")
            return Extend(kind, sid, body, self.sessions[sid])
        if kind in NO_REPLY:
            if sid not in self.sessions:
                return IGNORE
            self._cancelled.discard(sid)
            return End(sid, self.sessions.pop(sid), kind == "cancel")
        return Reject("bad_frame", f"a worker does not take {kind!r} frames", sid)

    def opened(self, session: bytes, handle) -> None:
        self.sessions[session] = handle

    def cancel_seen(self, session: bytes) -> bool:
        """The reader saw a `cancel` while a step may be computing: later extends are refused `cancelled`.
        True if this stream holds the session."""
        if session in self.sessions:
            self._cancelled.add(session)
            return True
        return False

    def abandoned(self, session: bytes) -> bool:
        """Is work for this session no longer wanted (cancelled, or the stream ended)?"""
        return self.gone or session in self._cancelled

    def finished(self, session: bytes) -> Reject | None:
        """A prefill / step computed: if the session was cancelled meanwhile, it ends now (the result is
        dropped) and the answer is this refusal; else None (send the result)."""
        if session in self._cancelled:
            return self._reject_cancelled(session, "cancelled during the step; session closed")
        return None

    def _reject_cancelled(self, session: bytes, message: str) -> Reject:
        self._cancelled.discard(session)
        return Reject("cancelled", message, session, self.sessions.pop(session, None))

    def drop(self, session: bytes):
        """Forget a session the driver ended itself (a refusal that closes it); returns its handle or None."""
        self._cancelled.discard(session)
        return self.sessions.pop(session, None)

    def close_all(self) -> list[object]:
        """The stream ended: every session it held, to free."""
        handles = list(self.sessions.values())
        self.sessions.clear()
        self._cancelled.clear()
        return handles


# ---------------------------------------------------------------------------------------------- seeker side
@dataclass(frozen=True)
class Reply:
    kind: str
    body: dict


@dataclass(frozen=True)
class Refusal:
    """The worker answered `error`: the request failed, the stream stays usable."""

    code: str
    message: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Violation:
    """The worker broke the protocol: drop the stream, blame the worker."""

    why: str


class HopStream:
    """One inference stream, the seeker's side: one request in flight, the reply it must get, the sessions
    the worker acknowledged. After a violation or a transport failure (`broken`) nothing more may be sent."""

    def __init__(self):
        self.waiting: tuple[str, str, bytes | None] | None = None  # (request, the reply it expects, session)
        self.opened: set[bytes] = set()
        self.is_broken = False

    def send(self, kind: str, body: dict) -> str | None:
        """Check a request before it is written; returns the reply kind it expects (None for cancel /
        close). ProtocolError if it may not be sent now."""
        if self.is_broken:
            raise ProtocolError("the stream is broken")
        sid = body.get("session")
        if kind in NO_REPLY:  # may go out any time (a cancel overtakes a step in flight); frees the session
            self.opened.discard(sid)
            return None
        if kind not in REPLIES:
            raise ProtocolError(f"{kind!r} is not a request")
        if self.waiting is not None:
            raise ProtocolError(f"{kind!r} while {self.waiting[0]!r} awaits its reply")
        if kind in EXTEND and sid not in self.opened:
            raise NotOpen(f"{kind!r} before the session was opened on this stream")
        self.waiting = (kind, REPLIES[kind], sid)
        return REPLIES[kind]

    def receive(self, kind: str, body: dict) -> Reply | Refusal | Violation:
        if self.is_broken:
            return Violation("the stream is broken")
        if kind == "error":  # the answer to the request in flight, or (none in flight) a drain's last words
            self.waiting = None
            if body.get("session") is not None and body.get("code") in ("cancelled", "draining", "unknown_session"):
                self.opened.discard(bytes(body["session"]))
            return Refusal(body["code"], body["message"], body.get("retry_after_s"))
        if self.waiting is None:
            return self._violate(f"sent an unsolicited {kind!r}")
        request, expect, sid = self.waiting
        if kind != expect:
            return self._violate(f"answered {kind} to {request}")
        if sid is not None and bytes(body.get("session", b"")) != sid:
            return self._violate(f"answered {request} for another session")
        self.waiting = None
        if request == "open":
            self.opened.add(sid)
        return Reply(kind, body)

    def broken(self) -> None:
        """The transport failed (EOF, reset, a deadline): the stream is done."""
        self.is_broken = True
        self.waiting = None

    def _violate(self, why: str) -> Violation:
        self.broken()
        return Violation(why)
