"""Where a plan's peers live in the lab (pure): which host process serves each, and their identities.

Every virtual peer has its own Ed25519 identity, derived from the lab's secret and the plan's peer id, so
the lab processes and the sweep agree on it without exchanging keys, and a restarted lab keeps its ids.
"""

from __future__ import annotations

import hashlib

from ..identity import Identity
from .plan import Plan, PlanRow


def peer_identity(secret: str, peer_id: str) -> Identity:
    return Identity(hashlib.sha256(f"gtracd-lab/{secret}/peer/{peer_id}".encode()).digest())


def host_identity(secret: str, group: int) -> Identity:
    return Identity(hashlib.sha256(f"gtracd-lab/{secret}/host/{group}".encode()).digest())


def groups(plan: Plan, n: int) -> list[list[PlanRow]]:
    """Split the plan over n host processes, keeping each reference worker process (ip:port) together and
    balancing peer counts (largest process first onto the emptiest group)."""
    if n < 1:
        raise ValueError("need at least one host process")
    procs: dict[tuple[str, int], list[PlanRow]] = {}
    for r in plan.rows:
        procs.setdefault(r.process_key, []).append(r)
    out: list[list[PlanRow]] = [[] for _ in range(min(n, len(procs)))]
    for key in sorted(procs, key=lambda k: (-len(procs[k]), k)):
        min(out, key=len).extend(procs[key])
    return [g for g in out if g]
