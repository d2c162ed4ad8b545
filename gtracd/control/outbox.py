"""The outbox (pure): trust reports this daemon signed, held until an anchor has acknowledged each.

Per report:   held --submit--> in an anchor's hands --"admitted" | "duplicate"--> acknowledged (gone)
                                                   --"pending" | "pending_full" | "rate_limited"--> held
                                                                                  (retried later)
                                                   --any other result---------> refused for good (gone, counted
                                                                                  by reason: retrying cannot help)
              a submission that failed, or an answer that names fewer results than reports sent, leaves the
              reports it did not answer for held.

A report leaves the outbox only by an anchor's answer about that very report: nothing is lost to a dead
anchor, a cut stream or a short reply. The follower (control/follower.py) drives it: it appends each report
to the outbox log before adding it here, submits `batch()` to one reachable anchor at a time, feeds the
answer to `answered`, and rewrites the log when that says something left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DONE = ("admitted", "duplicate")  # the anchor holds it
RETRY = ("pending", "pending_full", "rate_limited")  # the anchor asks for it again later

Key = tuple[bytes, int]  # (reporter public key, seq)


@dataclass
class Answer:
    acked: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # result -> reports refused for good with it

    @property
    def changed(self) -> bool:
        return bool(self.acked or self.refused)


class Outbox:
    def __init__(self, held: dict[Key, bytes] | None = None):
        self._held: dict[Key, bytes] = dict(held or {})  # insertion order: oldest first

    def add(self, key: Key, raw: bytes) -> None:
        self._held[key] = raw

    def batch(self) -> list[tuple[Key, bytes]]:
        """What to submit next: everything held, oldest first."""
        return list(self._held.items())

    def answered(self, sent: list[tuple[Key, bytes]], results: list[str]) -> Answer:
        """An anchor's per-report results for `sent` (in order)."""
        out = Answer()
        for (key, _), res in zip(sent, results, strict=False):
            if key not in self._held:
                continue
            if res in DONE:
                del self._held[key]
                out.acked += 1
            elif res not in RETRY:
                del self._held[key]
                out.refused[res] = out.refused.get(res, 0) + 1
        return out

    def raws(self) -> list[bytes]:
        """What the outbox log must hold (oldest first)."""
        return list(self._held.values())

    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, key: Key) -> bool:
        return key in self._held

    def keys(self) -> set[Key]:
        return set(self._held)
