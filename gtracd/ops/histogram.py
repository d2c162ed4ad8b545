"""Cumulative histograms and labelled counters a role fills as events end (pure, one owner: the task that
observes). They travel in the status snapshot as plain data, so `gtracd status --json` shows what
`/metrics` exports and the exporter never touches live state."""

from __future__ import annotations

import bisect
from collections import Counter

# seconds: per-token latency (a decode step) spans ~1 ms on loopback to seconds over a bad link; TTFT adds
# routing, prefill and any repair
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Histogram:
    """Bucket counts (not cumulative here; the exporter accumulates), their sum and count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def snapshot(self) -> dict:
        return {"bounds": list(self.bounds), "counts": list(self.counts), "sum": self.sum, "count": self.count}


def cumulative(snap: dict) -> list[tuple[str, float]]:
    """A snapshot as Prometheus buckets: (le, cumulative count), ending with +Inf."""
    out, acc = [], 0
    for b, c in zip([*snap["bounds"], float("inf")], snap["counts"], strict=True):
        acc += c
        out.append(("+Inf" if b == float("inf") else repr(float(b)), acc))
    return out


class Tally:
    """Counters by a reason from a closed or bounded set (the caller bounds it: codes, verdicts)."""

    MAX_KEYS = 64  # a reason never seen before beyond this is counted as "other"

    def __init__(self):
        self.c: Counter[str] = Counter()

    def add(self, reason: str, n: int = 1) -> None:
        if reason not in self.c and len(self.c) >= self.MAX_KEYS:
            reason = "other"
        self.c[reason] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self.c)
