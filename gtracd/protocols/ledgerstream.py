"""The anchor's side of a ledger stream (pure): what each frame a peer sends means, in the h11 style. A driver
(anchor/main.py `handle`) feeds every frame it read to `receive` and acts on the event:

    submit {network, reports}        -> Submit(reports): admit them, answer `ack` (results in order)
    sync_digest | sync_want {...}    -> Reply(frames): the anti-entropy responder's pages (ledgersync.Responder)
    either, over the asker's quota   -> Hold(seconds) when its budget comes back within MAX_HOLD_S: feed the
                                        same frame again after that long; else Refuse("busy", retry_after_s).
                                        Nothing is computed before it is paid (anchor/quota.py
                                        prices a submit by its reports' bytes, a sync per diff built and by the
                                        checkpoint state it would send)
    a frame of another network, a kind an anchor does not take, a sync frame out of place, an unreadable
    frame (`malformed`)              -> Refuse(code, message, drop): send `error`, count `drop`, close

After a Refuse the stream is closed: every later frame is refused again (a driver bug to feed one).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ledgersync import ProtocolError, Responder


@dataclass(frozen=True)
class Submit:
    reports: list


@dataclass(frozen=True)
class Reply:
    frames: list[tuple[str, dict]]


MAX_HOLD_S = 5.0  # an asker over its budget waits this long at most for it, unanswered; beyond, busy


@dataclass(frozen=True)
class Hold:
    """Over budget for now: wait `seconds`, then feed the same frame again (nothing was paid or changed)."""

    seconds: float


@dataclass(frozen=True)
class Refuse:
    code: str
    message: str
    drop: str | None = None  # the verifier's drop counter this counts under, if any
    retry_after_s: float | None = None

    @property
    def frame(self) -> tuple[str, dict]:
        body = {"code": self.code, "message": self.message[:2000]}
        if self.retry_after_s is not None:
            body["retry_after_s"] = min(3600.0, self.retry_after_s)
        return "error", body


def _no_quota(_costs: list[tuple[str, float]]) -> float:
    return 0.0


class LedgerStream:
    """`pay([(what, cost), ...]) -> seconds to wait` (0: all paid): the asker's quota, bound to it and the
    clock."""

    def __init__(self, network: str, sync: Responder, pay=_no_quota):
        self.network = network
        self.sync = sync  # this stream's anti-entropy session
        self.pay = pay
        self.closed = False

    def _refuse(self, code: str, message: str, drop: str | None = None, retry: float | None = None) -> Refuse:
        self.closed = True
        return Refuse(code, message, drop, retry)

    def _priced(self, kind: str, body: dict) -> Refuse | Hold | None:
        if kind == "submit":
            costs = [("bytes", sum(len(r) for r in body["reports"]))]
        elif kind == "sync_digest" and body.get("last"):  # a diff, and the checkpoint state it would send
            costs = [("session", 1), ("bytes", self.sync.offer_size(body.get("checkpoint")))]
        else:
            return None
        wait = self.pay(costs)
        if 0.0 < wait <= MAX_HOLD_S:
            return Hold(wait)
        if wait > 0.0:
            return self._refuse("busy", f"over this peer's quota: try again in {wait:.1f}s", "quota", wait)
        return None

    def malformed(self, why: str, oversize: bool = False) -> Refuse:
        """A frame that did not decode (or was over the cap)."""
        return self._refuse("bad_frame", why, "oversize" if oversize else "malformed")

    def receive(self, kind: str, body: dict) -> Submit | Reply | Refuse | Hold:
        if self.closed:
            return Refuse("bad_frame", "the stream is closed")
        if kind in ("submit", "sync_digest") and body.get("network") != self.network:
            return self._refuse("wrong_network", f"this is {self.network}")
        priced = self._priced(kind, body)
        if priced is not None:
            return priced
        if kind == "submit":
            return Submit(list(body["reports"]))
        if kind in ("sync_digest", "sync_want"):
            try:
                return Reply(list(self.sync.receive(kind, body).send))
            except ProtocolError as e:
                return self._refuse("bad_frame", str(e), "sync_protocol")
        return self._refuse("bad_frame", f"an anchor does not take {kind!r}")
