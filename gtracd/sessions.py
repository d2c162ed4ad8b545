"""KV-cache session admission and eviction (pure bookkeeping; the worker owns the tensors).

A session holds `tokens` cached positions. The worker has a token budget and a session cap. Admission of
n new positions first evicts idle sessions (TTL expired, then least recently used) that are not busy; if
still short, it refuses with a clear reason.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class SessionInfo:
    sid: bytes
    max_length: int
    tokens: int = 0
    last_used: float = 0.0
    busy: bool = False


class Refused(Exception):
    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


class SessionTable:
    def __init__(self, max_sessions: int, token_budget: int, ttl_s: float):
        self.max_sessions = max_sessions
        self.token_budget = token_budget
        self.ttl_s = ttl_s
        self._s: OrderedDict[bytes, SessionInfo] = OrderedDict()
        self.evicted = 0

    def __contains__(self, sid: bytes) -> bool:
        return sid in self._s

    def __len__(self) -> int:
        return len(self._s)

    def get(self, sid: bytes) -> SessionInfo | None:
        return self._s.get(sid)

    @property
    def used_tokens(self) -> int:
        return sum(s.tokens for s in self._s.values())

    @property
    def free_tokens(self) -> int:
        return max(0, self.token_budget - self.used_tokens)

    def expire(self, now: float) -> list[bytes]:
        """Sessions idle longer than the TTL."""
        gone = [sid for sid, s in self._s.items() if not s.busy and now - s.last_used > self.ttl_s]
        for sid in gone:
            del self._s[sid]
        self.evicted += len(gone)
        return gone

    def _evict_lru(self, exclude: bytes | None) -> bytes | None:
        for sid, s in self._s.items():  # oldest first
            if sid != exclude and not s.busy:
                del self._s[sid]
                self.evicted += 1
                return sid
        return None

    def open(self, sid: bytes, max_length: int, now: float) -> list[bytes]:
        """Admit a new session (its max_length clamped to the budget); returns the ids evicted to make room."""
        if sid in self._s:
            raise Refused("bad_frame", "session already open")
        evicted = self.expire(now)
        while len(self._s) >= self.max_sessions:
            v = self._evict_lru(None)
            if v is None:
                raise Refused("busy", f"worker full: {self.max_sessions} sessions busy")
            evicted.append(v)
        self._s[sid] = SessionInfo(sid, min(max_length, self.token_budget), 0, now)
        return evicted

    def reserve(self, sid: bytes, new_total: int, now: float) -> list[bytes]:
        """Grow (or shrink) a session to `new_total` cached positions; evicts others if needed."""
        s = self._s.get(sid)
        if s is None:
            raise Refused("unknown_session", "unknown or evicted session")
        if new_total > s.max_length:
            raise Refused("too_long", f"{new_total} positions exceed the session's max_length {s.max_length}")
        evicted = self.expire(now)
        while self.used_tokens - s.tokens + new_total > self.token_budget:
            v = self._evict_lru(sid)
            if v is None:
                raise Refused("busy", f"cache budget of {self.token_budget} tokens exhausted")
            evicted.append(v)
        s.tokens = new_total
        s.last_used = now
        self._s.move_to_end(sid)
        return evicted

    def touch(self, sid: bytes, now: float, busy: bool | None = None) -> None:
        s = self._s.get(sid)
        if s is not None:
            s.last_used = now
            if busy is not None:
                s.busy = busy
            self._s.move_to_end(sid)

    def close(self, sid: bytes) -> bool:
        return self._s.pop(sid, None) is not None
