"""Which self-placing workers move to heal a hole in coverage (pure).

A hole is a run of layers no alive peer at or above the trust floor hosts (a crash, a drain, a trust
collapse). Only self-placing (auto) workers move, and only ones whose layers stay covered without them
(each of their layers has >= 2 replicas): a move never opens a new hole, so healing cannot oscillate
between two holes. Candidates are taken most-redundant first (ties: peer id); each is removed from the
coverage and placed like a joiner (membership.placement), and kept only if its new range covers part of a
hole. Every worker computes the same plan from the same view and acts on its own entry.

Hysteresis and bounds live in the driver (worker.agent): a hole must persist for `heal_after_s` before
anyone moves, a worker moves at most once per `move_window_s`, and a mover that sees another mover already
heading for the same hole (announced as draining with a target) stands down.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..routing.coverage import holes, replicas
from .placement import Budget, Choice, Footprint, choose


@dataclass(frozen=True)
class Mover:
    peer_id: str
    start: int
    end: int
    budget: Budget


def heal(fp: Footprint, holders: list[tuple[str, int, int]], movable: list[Mover]) -> dict[str, Choice]:
    """holders: (peer id, start, end) of every alive trusted peer (auto ones included); movable: the auto
    workers among them with their budgets. Returns peer id -> its new range, for the workers that move."""
    total = fp.layers
    current = {pid: (a, b) for pid, a, b in holders}
    if not holes(total, current.values()):
        return {}
    counts = replicas(total, current.values())

    def redundancy(m: Mover) -> int:
        return min(counts[m.start:m.end])

    out: dict[str, Choice] = {}
    for m in sorted(movable, key=lambda m: (-redundancy(m), m.peer_id)):
        if m.peer_id not in current:
            continue
        rest = [r for pid, r in current.items() if pid != m.peer_id]
        left = replicas(total, rest)
        if any(left[i] == 0 for i in range(m.start, m.end)):
            continue  # its layers would become a hole
        gaps = holes(total, rest)
        if not gaps:
            break
        c = choose(fp, rest, m.budget, m.peer_id)
        if c is None or not any(a < c.end and c.start < b for a, b in gaps):
            continue
        out[m.peer_id] = Choice(m.peer_id, c.start, c.end, f"healing: {c.reason}; left {m.start}:{m.end}")
        current[m.peer_id] = c.range
    return out
