"""KV-cache session admission and eviction (pure bookkeeping; the worker owns the tensors).

A session holds `tokens` cached positions and belongs to the remote peer (`owner`) that opened it. The worker
has a global session cap and token budget, and per-owner caps. When room is short, idle sessions are evicted
(TTL expired first, then least recently used) but only from owners above their fair share (the budget split
evenly over the owners holding sessions, the asking one included) or from the asking owner itself: a flood
from one peer never evicts another peer's sessions within its share. If nothing may be evicted the request is
refused with `busy` and a retry-after; a refusal and an eviction are never the worker's fault (seeker.blame).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

BUSY_RETRY_S = 2.0  # what a `busy` refusal asks the seeker to wait before trying this worker again


@dataclass
class SessionInfo:
    sid: bytes
    max_length: int
    tokens: int = 0
    last_used: float = 0.0
    busy: bool = False
    owner: str = ""


class Refused(Exception):
    def __init__(self, code: str, message: str, retry_after_s: float | None = None):
        self.code = code
        self.retry_after_s = retry_after_s
        super().__init__(message)


def busy(message: str) -> Refused:
    return Refused("busy", message, BUSY_RETRY_S)


class SessionTable:
    def __init__(self, max_sessions: int, token_budget: int, ttl_s: float, per_owner_sessions: int | None = None,
                 per_owner_tokens: int | None = None, max_length: int | None = None):
        self.max_sessions = max_sessions
        self.max_length = max_length  # the worker's own bound on one session (its `max_length` setting)
        self.token_budget = token_budget
        self.ttl_s = ttl_s
        # one peer may hold at most 3/4 of either budget by default: another peer always finds room
        self.per_owner_sessions = per_owner_sessions or max(1, max_sessions * 3 // 4)
        self.per_owner_tokens = per_owner_tokens or max(1, token_budget * 3 // 4)
        self._s: OrderedDict[bytes, SessionInfo] = OrderedDict()
        self.evicted = 0
        self.refused = 0

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

    def owned(self, owner: str) -> tuple[int, int]:
        """(sessions, cached tokens) held by `owner`."""
        mine = [s for s in self._s.values() if s.owner == owner]
        return len(mine), sum(s.tokens for s in mine)

    def expire(self, now: float) -> list[bytes]:
        """Sessions idle longer than the TTL."""
        gone = [sid for sid, s in self._s.items() if not s.busy and now - s.last_used > self.ttl_s]
        for sid in gone:
            del self._s[sid]
        self.evicted += len(gone)
        return gone

    def _victim(self, asker: str, exclude: bytes | None, by_tokens: bool) -> bytes | None:
        """The least recently used idle session that may be evicted for `asker`: its own, or one of an owner
        above its fair share of sessions (or tokens)."""
        owners: dict[str, list[int]] = {asker: [0, 0]}
        for s in self._s.values():
            o = owners.setdefault(s.owner, [0, 0])
            o[0] += 1
            o[1] += s.tokens
        share = (self.token_budget if by_tokens else self.max_sessions) / len(owners)
        for sid, s in self._s.items():  # oldest first
            if sid == exclude or s.busy:
                continue
            if s.owner == asker or owners[s.owner][1 if by_tokens else 0] > share:
                return sid
        return None

    def _own_victim(self, owner: str, exclude: bytes | None) -> bytes | None:
        return next((sid for sid, s in self._s.items() if s.owner == owner and sid != exclude and not s.busy), None)

    def _evict(self, sid: bytes) -> bytes:
        del self._s[sid]
        self.evicted += 1
        return sid

    def _refuse(self, message: str) -> Refused:
        self.refused += 1
        return busy(message)

    def open(self, sid: bytes, max_length: int, now: float, owner: str = "") -> list[bytes]:
        """Admit a new session (its max_length clamped to the budgets); returns the ids evicted to make room."""
        if sid in self._s:
            raise Refused("bad_frame", "session already open")
        evicted = self.expire(now)
        while self.owned(owner)[0] >= self.per_owner_sessions:  # at its own cap: only its own idle sessions go
            v = self._own_victim(owner, None)
            if v is None:
                raise self._refuse(f"peer holds its limit of {self.per_owner_sessions} sessions here")
            evicted.append(self._evict(v))
        while len(self._s) >= self.max_sessions:
            v = self._victim(owner, None, False)
            if v is None:
                raise self._refuse(f"worker full: {self.max_sessions} sessions, none evictable")
            evicted.append(self._evict(v))
        grant = min(max_length, self.token_budget, self.per_owner_tokens, self.max_length or max_length)
        self._s[sid] = SessionInfo(sid, grant, 0, now, False, owner)
        return evicted

    def reserve(self, sid: bytes, new_total: int, now: float) -> list[bytes]:
        """Grow (or shrink) a session to `new_total` cached positions; evicts others if needed."""
        s = self._s.get(sid)
        if s is None:
            raise Refused("unknown_session", "unknown or evicted session")
        if new_total > s.max_length:
            raise Refused("too_long", f"{new_total} positions exceed the session's max_length {s.max_length}")
        evicted = self.expire(now)
        grow = new_total - s.tokens
        while self.owned(s.owner)[1] + grow > self.per_owner_tokens:
            v = self._own_victim(s.owner, sid)
            if v is None:
                raise self._refuse(f"peer holds its limit of {self.per_owner_tokens} cached tokens here")
            evicted.append(self._evict(v))
        while self.used_tokens + grow > self.token_budget:
            v = self._victim(s.owner, sid, True)
            if v is None:
                raise self._refuse(f"cache budget of {self.token_budget} tokens exhausted, none evictable")
            evicted.append(self._evict(v))
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
