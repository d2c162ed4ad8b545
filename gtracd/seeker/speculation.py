"""Speculative decoding, the seeker's pure part: drafts that cost no model, and how many to send.

A draft comes from the conversation itself (*prompt lookup*): the last n tokens (n from NGRAM_MAX down to
NGRAM_MIN) are looked up at their latest earlier occurrence, and the tokens that followed it there are
proposed. Rewriting, quoting, code edits and summaries repeat their input, so drafts often hold; no torch
and no draft model, so a phone drafts too.

The chain then computes the last token and the k drafts as one step (`verify`): the last hop answers the
token it chooses after every position, exactly as a plain step at that position would (greedy, or the same
per-position seeded sample), so the seeker keeps the longest prefix of drafts that matches those choices plus
the choice after it: 1 to k + 1 tokens per trip, identical to plain decoding, whatever the temperature.
Every hop drops the rejected positions at its next call (the cache is cropped to the position a call starts
at).

`Speculation` decides the draft length per step. `off`: never. `K`: up to K drafts whenever the lookup finds
some. `auto`: starts at AUTO_START, grows by 2 after a trip that kept every draft, shrinks by 1 after one that
did not (up to AUTO_MAX); after PATIENCE trips in a row that kept nothing it pauses for a number of plain
steps that doubles each time (PAUSE_MIN to PAUSE_MAX) and resets on the next accepted draft — so text the
drafts do not fit costs a few short trips, not a slower generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..wire.kinds import MAX_VERIFY

NGRAM_MAX = 3
NGRAM_MIN = 2  # a single token matches almost anywhere: its drafts rarely hold
MAX_DRAFT = MAX_VERIFY - 1  # drafts per step: a verifying step carries the last token and its drafts
AUTO_START = 4
AUTO_MAX = 8
PATIENCE = 3
PAUSE_MIN, PAUSE_MAX = 8, 64
MODES = ("auto", "off")  # or a number of drafts, 1..MAX_DRAFT


def parse(value) -> int | str:
    """`auto`, `off` (or 0), or K drafts (1..MAX_DRAFT): the setting and the API field. ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError("speculate is auto, off or a number of draft tokens")
    if isinstance(value, str):
        v = value.strip().lower()
        if v in MODES:
            return v
        if not v.isdigit():
            raise ValueError(f"speculate is auto, off or 1..{MAX_DRAFT} draft tokens, not {value!r}")
        value = int(v)
    if not isinstance(value, int) or not 0 <= value <= MAX_DRAFT:
        raise ValueError(f"speculate is auto, off or 1..{MAX_DRAFT} draft tokens, not {value!r}")
    return "off" if value == 0 else value


def propose(context: list[int], k: int, ngram_max: int = NGRAM_MAX, ngram_min: int = NGRAM_MIN) -> list[int]:
    """Up to k draft tokens to follow `context`: what followed the latest earlier occurrence of its last n
    tokens, for the longest n that occurs (none: [])."""
    size = len(context)
    if k <= 0:
        return []
    for n in range(min(ngram_max, size - 1), ngram_min - 1, -1):
        tail = context[size - n:]
        first = tail[0]
        for s in range(size - n - 1, -1, -1):  # latest first; s + n <= size - 1: at least one token follows
            if context[s] == first and context[s:s + n] == tail:
                return context[s + n:s + n + k]
    return []


def accepted(drafts: list[int], chosen: list[int]) -> int:
    """How many drafts the chain's choices confirm: chosen[j] is the token after the j-th position of the
    step (the last token, then each draft), so draft j holds while it equals chosen[j]."""
    m = 0
    while m < len(drafts) and m < len(chosen) and drafts[m] == chosen[m]:
        m += 1
    return m


@dataclass
class Speculation:
    setting: int | str = "auto"
    k: int = AUTO_START
    misses: int = 0  # auto: trips in a row that kept no draft
    paused: int = 0  # auto: plain steps left before drafting again
    backoff: int = PAUSE_MIN
    counters: dict = field(default_factory=lambda: {"trips": 0, "drafted": 0, "accepted": 0, "paused": 0})

    def __post_init__(self):
        self.setting = parse(self.setting)
        if isinstance(self.setting, int):
            self.k = self.setting

    @property
    def on(self) -> bool:
        return self.setting != "off"

    def want(self) -> int:
        """Drafts to ask for at this decode step (0: a plain step)."""
        if self.setting == "off":
            return 0
        if self.paused > 0:
            self.paused -= 1
            return 0
        return self.k

    def observe(self, drafted: int, kept: int) -> None:
        """A speculative trip sent `drafted` drafts and `kept` of them held."""
        c = self.counters
        c["trips"] += 1
        c["drafted"] += drafted
        c["accepted"] += kept
        if self.setting != "auto":
            return
        self.k = min(AUTO_MAX, self.k + 2) if kept == drafted else max(1, self.k - 1)
        if kept:
            self.misses, self.backoff = 0, PAUSE_MIN
            return
        self.misses += 1
        if self.misses >= PATIENCE:
            self.paused, self.misses = self.backoff, 0
            self.backoff = min(PAUSE_MAX, self.backoff * 2)
            c["paused"] += 1

    def off(self) -> None:
        """No more speculation in this generation (a last hop that cannot verify)."""
        self.setting = "off"

    def accepted_per_trip(self) -> float:
        c = self.counters
        return (c["accepted"] + c["trips"]) / c["trips"] if c["trips"] else 0.0
