"""The verifier: a pure object that decides whether an envelope is admitted, and counts every drop.

Order: decode (malformed / oversize) -> clock skew -> replay window (read only) -> signature -> the replay
window records it. The cheap checks come first: a replayed copy costs no signature check; a forged message
never touches the replay state.
"""

from __future__ import annotations

from collections import Counter, OrderedDict

from ..errors import DecodeError, Dropped, Oversize
from .envelope import Envelope, UnknownKind, decode_envelope
from .limits import DEFAULT_LIMITS, Limits
from .versions import VersionRefused


class _Window:
    __slots__ = ("high", "seen")

    def __init__(self):
        self.high = -1
        self.seen: set[int] = set()


class Verifier:
    def __init__(self, max_skew_s: float = 60.0, window: int = 4096, max_senders: int = 100_000,
                 limits: Limits = DEFAULT_LIMITS, allowed_senders: set[bytes] | None = None):
        self.max_skew_s = max_skew_s
        self.window = window
        self.max_senders = max_senders
        self.limits = limits
        self.allowed_senders = allowed_senders  # None: anyone; else only these public keys
        self.dropped: Counter[str] = Counter()
        self.accepted = 0
        self.verified = 0  # signatures checked
        self._senders: OrderedDict[tuple[bytes, str], _Window] = OrderedDict()

    def check(self, env: Envelope, now: float) -> None:
        """Raise Dropped(reason) or record the envelope as seen."""
        if self.allowed_senders is not None and env.sender not in self.allowed_senders:
            raise Dropped("untrusted_sender", env.sender_id)
        if abs(env.ts - now) > self.max_skew_s:
            raise Dropped("clock_skew", f"{env.ts - now:+.1f}s")
        key = (env.sender, env.kind)
        w = self._senders.get(key)
        if w is not None and (env.seq <= w.high - self.window or env.seq in w.seen):
            raise Dropped("replay", f"seq {env.seq}")
        self.verified += 1
        if not env.signature_ok():
            raise Dropped("bad_signature", env.sender_id)
        if w is None:
            w = self._senders[key] = _Window()
            if len(self._senders) > self.max_senders:
                self._senders.popitem(last=False)
        else:
            self._senders.move_to_end(key)
        w.seen.add(env.seq)
        if env.seq > w.high:
            w.high = env.seq
            if len(w.seen) > 2 * self.window:
                w.seen = {s for s in w.seen if s > w.high - self.window}

    def admit(self, data: bytes, now: float, kinds: tuple[str, ...] | None = None) -> Envelope | None:
        """Decode + check; returns the envelope, or None after counting the drop reason."""
        try:
            env = decode_envelope(data, self.limits)
            if kinds is not None and env.kind not in kinds:
                raise Dropped("unexpected_kind", env.kind)
            self.check(env, now)
        except DecodeError as e:
            self.dropped[drop_reason(e)] += 1
            return None
        except Dropped as e:
            self.dropped[e.reason] += 1
            return None
        self.accepted += 1
        return env

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


def drop_reason(e: DecodeError) -> str:
    """The counted reason of a message that did not decode."""
    if isinstance(e, VersionRefused):
        return "wire_version"
    if isinstance(e, UnknownKind):
        return "unknown_kind"
    return "oversize" if isinstance(e, Oversize) else "malformed"
