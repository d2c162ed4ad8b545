"""Coverage of a model's layers by the live, trusted peers (pure): what `gtracd top` colours per layer and
what self-placing workers read to find the weakest span.

A layer is covered by a peer when the peer hosts it, is alive and has trust >= the floor (tau_min). Per layer:
how many such replicas, and the best per-layer latency among them (a peer's latency spread over the layers it
hosts). Holes are maximal runs of layers with no replica; the weakest span is the first maximal run with the
fewest replicas. Complete coverage is necessary for a route, not sufficient: a chain's ranges must meet at
their boundaries (0:2 and 1:3 cover 0:3 but do not chain). Work: O(peers + layers + the peers' widths).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .core import Snapshot


@dataclass(frozen=True)
class Coverage:
    layers: int
    replicas: tuple[int, ...]  # per layer: alive peers at or above the trust floor hosting it
    best_ms_per_layer: tuple[float, ...]  # per layer: min over those peers of latency / layers hosted (inf: none)

    @property
    def holes(self) -> list[tuple[int, int]]:
        """Maximal [start, end) runs of layers nobody trusted and alive hosts."""
        return runs(self.replicas, lambda n: n == 0)

    @property
    def min_replicas(self) -> int:
        return min(self.replicas, default=0)

    @property
    def complete(self) -> bool:
        return self.min_replicas > 0

    def weakest(self) -> tuple[int, int]:
        """The first maximal [start, end) run of layers with the fewest replicas."""
        low = self.min_replicas
        return runs(self.replicas, lambda n: n == low)[0]


def runs(values, pred) -> list[tuple[int, int]]:
    """Maximal [start, end) index runs where pred(value) holds."""
    out, start = [], None
    for i, v in enumerate(values):
        if pred(v):
            if start is None:
                start = i
        elif start is not None:
            out.append((start, i))
            start = None
    if start is not None:
        out.append((start, len(values)))
    return out


def replicas(layers: int, ranges) -> list[int]:
    """Per layer, how many of the [start, end) ranges host it (a difference array: O(ranges + layers))."""
    diff = [0] * (layers + 1)
    for a, b in ranges:
        diff[a] += 1
        diff[b] -= 1
    out, n = [], 0
    for i in range(layers):
        n += diff[i]
        out.append(n)
    return out


def holes(layers: int, ranges) -> list[tuple[int, int]]:
    """Maximal [start, end) runs of layers none of the ranges hosts."""
    return runs(replicas(layers, ranges), lambda n: n == 0)


def coverage(snap: Snapshot, trust_floor: float) -> Coverage:
    ok = [p for p in snap.peers if p.alive and p.trust >= trust_floor]
    best = [math.inf] * snap.layers
    for p in ok:
        per = p.latency_ms / (p.end - p.start)
        for layer in range(p.start, p.end):  # peers' ranges are short; total work is the sum of their widths
            if per < best[layer]:
                best[layer] = per
    return Coverage(snap.layers, tuple(replicas(snap.layers, [(p.start, p.end) for p in ok])), tuple(best))
