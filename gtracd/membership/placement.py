"""Where a self-placing worker goes (pure): the contiguous layer range that most improves the weakest span
of the network's coverage, within the worker's budget.

Inputs are the shared view every daemon already has from heartbeats and the ledger: the ranges of the alive
peers at or above the trust floor (serving, or announced as loading a range), and the workers announcing
that they are joining, with their budgets. The choice is deterministic, and joiners that see each other
place jointly: largest budget first, then in peer-id order, each takes its range in the coverage the earlier
ones leave, so two workers joining at the same moment never pick the same hole while another stays open.

One joiner's rule: the weakest span is the first maximal run of layers with the fewest replicas. The range
starts where that run starts (layer 0, or where some range ends, so a chain reaches it) and takes as many
layers as the budget allows, cut back to the last boundary where an existing range starts (or the model's
end) so chains continue from it. If the budget cannot hold one layer there (the first range also carries
the embeddings, the last the head), it starts at the first layer of the run where one fits, else the
next-weakest run is tried.

Guarantee (property-tested): every hole is covered when the joiners' layer budgets sum to at least the
hole layers plus (holes - 1) x (largest budget - 1) — a joiner's excess past a hole's end can be wasted on
covered layers, at most once per hole.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..routing.coverage import replicas, runs


@dataclass(frozen=True)
class Footprint:
    """Resident bytes of a layer range (as shards serve it: engine.footprint): per layer, plus what the first range
    (embeddings) and the last range (final norm and head; the embedding again when tied) carry."""

    layer_bytes: tuple[int, ...]
    first_bytes: int = 0
    last_bytes: int = 0

    @property
    def layers(self) -> int:
        return len(self.layer_bytes)

    def bytes(self, start: int, end: int) -> int:
        return (sum(self.layer_bytes[start:end]) + (self.first_bytes if start == 0 else 0)
                + (self.last_bytes if end == self.layers else 0))

    @classmethod
    def uniform(cls, layers: int, per_layer: int = 1, first: int = 0, last: int = 0) -> Footprint:
        return cls(tuple([per_layer] * layers), first, last)


@dataclass(frozen=True)
class Budget:
    """What one worker can host: at most `max_layers` layers and at most `memory_bytes` resident (None:
    no bound of that kind)."""

    max_layers: int | None = None
    memory_bytes: int | None = None

    def max_end(self, start: int, fp: Footprint) -> int:
        """The largest end such that [start, end) fits (start itself when not even one layer fits)."""
        end = fp.layers if self.max_layers is None else min(fp.layers, start + self.max_layers)
        if self.memory_bytes is not None:
            while end > start and fp.bytes(start, end) > self.memory_bytes:
                end -= 1
        return end

    def capacity(self, fp: Footprint) -> int:
        """The most layers it can hold anywhere."""
        return max(self.max_end(a, fp) - a for a in range(fp.layers))

    def fits(self, fp: Footprint) -> bool:
        """Can it hold one layer somewhere (the first and last layers cost more)?"""
        return any(self.max_end(a, fp) > a for a in range(fp.layers))

    def describe(self, fp: Footprint) -> str:
        parts = []
        if self.max_layers is not None:
            parts.append(f"{self.max_layers} layers")
        if self.memory_bytes is not None:
            parts.append(f"{self.memory_bytes / 2**20:.0f} MiB")
        return " and ".join(parts) or "unbounded"


@dataclass(frozen=True)
class Joiner:
    peer_id: str
    budget: Budget


@dataclass(frozen=True)
class Choice:
    peer_id: str
    start: int
    end: int
    reason: str

    @property
    def range(self) -> tuple[int, int]:
        return self.start, self.end


def choose(fp: Footprint, holders: list[tuple[int, int]], budget: Budget, peer_id: str = "") -> Choice | None:
    """One worker's range given the ranges already held (see the module doc); None if nothing fits."""
    total = fp.layers
    counts = replicas(total, holders)
    starts = {a for a, _ in holders} | {total}
    levels = sorted(set(counts))
    for level in levels:
        for run in runs(counts, lambda n, lv=level: n == lv):
            start = next((a for a in range(*run) if budget.max_end(a, fp) > a), None)
            if start is None:
                continue
            cap = budget.max_end(start, fp)
            snapped = [b for b in starts if start < b <= cap]
            end = max(snapped) if snapped else cap
            what = "a hole" if level == 0 else f"{level} replica{'s' if level != 1 else ''}"
            weakest = "weakest span" if level == levels[0] else "weakest span the budget fits"
            return Choice(peer_id, start, end,
                          f"{weakest} {run[0]}:{run[1]} had {what}; budget {budget.describe(fp)} "
                          f"({fp.bytes(start, end) / 2**20:.0f} MiB resident)")
    return None


def place(fp: Footprint, holders: list[tuple[int, int]], joiners: list[Joiner]) -> dict[str, Choice]:
    """Joint placement of workers joining at once: largest budget first (ties: peer id), each chooses in the
    coverage the earlier ones leave. Every joiner computes the same answer from the same view and takes its
    own."""
    held = list(holders)
    out: dict[str, Choice] = {}
    for j in sorted(joiners, key=lambda j: (-j.budget.capacity(fp), j.peer_id)):
        c = choose(fp, held, j.budget, j.peer_id)
        if c is not None:
            out[j.peer_id] = c
            held.append(c.range)
    return out
