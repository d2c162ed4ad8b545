"""Trust-aware routing (pure): G-TRAC and the SP, MR, LARAC and Naive baselines.

Layer boundaries 0..L are vertices, a peer hosting [start, end) is an edge start -> end, so a chain covering
every layer is a path 0 -> L and one shortest-path pass over edges sorted by start is O(peers + layers).
"""

from .core import (
    MODES,
    NoRoute,
    Params,
    Peer,
    Route,
    Snapshot,
    effective_latency,
    eps_from_floor,
    h_max,
    replacement,
    route,
    trust_floor,
)

__all__ = [
    "MODES", "NoRoute", "Params", "Peer", "Route", "Snapshot", "effective_latency", "eps_from_floor", "h_max",
    "replacement", "route", "trust_floor",
]
