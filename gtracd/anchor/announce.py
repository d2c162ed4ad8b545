"""Which admitted reports this anchor announces (`ledger_delta` gossip), and when (pure; the caller passes the
clock). A report the seeker submitted here directly is announced at once; one heard only by gossip waits a
random 0.2-0.6 s, and is dropped if another anchor's delta carries it first, so the common case costs one
delta per report, not one per anchor.

Per report:  scheduled(due) --due(now) reached--> announced (gone)
                           --hurry (its seeker chose us)--> scheduled(now)
                           --covered (another delta carried it)--> gone
Driver: anchor/main.py's announcer task; admission paths schedule, hurry and cover.
"""

from __future__ import annotations

from ..ledger.report import Report

Key = tuple[bytes, int]


class AnnounceQueue:
    def __init__(self):
        self._due: dict[Key, tuple[Report, float]] = {}

    def schedule(self, reports: list[Report], now: float, delay: float) -> bool:
        """Announce each at `now + delay` unless already scheduled (the earlier time stands). True if any
        was new."""
        new = False
        for r in reports:
            if r.key not in self._due:
                self._due[r.key] = (r, now + delay)
                new = True
        return new

    def hurry(self, key: Key) -> bool:
        """Its seeker submitted it here: announce it at the next look. True if it was waiting."""
        if key not in self._due:
            return False
        self._due[key] = (self._due[key][0], float("-inf"))
        return True

    def covered(self, key: Key) -> None:
        """Another anchor's delta carried it: nothing left to announce."""
        self._due.pop(key, None)

    def due(self, now: float) -> list[Report]:
        """Take the reports due by `now`, in the order they were scheduled."""
        keys = [k for k, (_, t) in self._due.items() if t <= now]
        return [self._due.pop(k)[0] for k in keys]

    def next_due(self) -> float | None:
        return min((t for _, t in self._due.values()), default=None)

    def __len__(self) -> int:
        return len(self._due)
