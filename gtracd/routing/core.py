"""Routing core. No I/O, no clocks: a Snapshot and Params in, a Route out (or NoRoute saying why)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from ..errors import GtracError, UserError

MODES = ("g-trac", "sp", "mr", "larac", "naive")
INF = math.inf
_TINY = 1e-300  # trust 0 still yields a finite -log for MR (such chains are worst, not impossible)


@dataclass(frozen=True)
class Peer:
    id: str
    start: int  # first layer hosted (inclusive)
    end: int  # last layer hosted + 1 (exclusive)
    trust: float
    latency_ms: float
    alive: bool = True


@dataclass(frozen=True)
class Params:
    trust_floor: float = 0.96  # tau_min
    penalty_ms: float = 1000.0  # T_pen
    min_reliability: float = 0.8  # R_min (LARAC)
    larac_max_iter: int = 32


def trust_floor(eps: float, hmax: int) -> float:
    """Lemma 1: tau_min = (1 - eps)^(1 / H_max) guarantees R(P) >= 1 - eps for every chain of <= H_max hops."""
    if not 0.0 <= eps < 1.0 or hmax < 1:
        raise ValueError("need 0 <= eps < 1 and H_max >= 1")
    return (1.0 - eps) ** (1.0 / hmax)


def eps_from_floor(tau_min: float, hmax: int) -> float:
    """Inverse of trust_floor: the risk bound a floor guarantees for chains of <= H_max hops."""
    if not 0.0 < tau_min <= 1.0 or hmax < 1:
        raise ValueError("need 0 < tau_min <= 1 and H_max >= 1")
    return 1.0 - tau_min**hmax


def h_max(layers: int, min_layers_per_peer: int) -> int:
    """H_max = ceil(L / l_min): no chain can have more hops than this."""
    if layers < 1 or min_layers_per_peer < 1:
        raise ValueError("need L >= 1 and l_min >= 1")
    return -(-layers // min_layers_per_peer)


def effective_latency(p: Peer, penalty_ms: float) -> float:
    """c_i = l_i + (1 - tau_i) * T_pen."""
    return p.latency_ms + (1.0 - p.trust) * penalty_ms


class NoRoute(GtracError):
    def __init__(self, message: str, gap: tuple[int, int] | None = None):
        self.gap = gap
        super().__init__(message)


@dataclass
class Route:
    mode: str
    chain: list[Peer]
    latency_ms: float
    reliability: float
    cost: float  # G-TRAC effective latency of the chain, whatever the mode (comparable across modes)
    feasible: bool = True  # LARAC: False when no chain meets R_min and MR's chain was returned
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return [p.id for p in self.chain]

    def to_json(self, selection_ms: float | None = None) -> dict:
        d = {"mode": self.mode, "chain": self.ids, "latency_ms": self.latency_ms, "reliability": self.reliability,
             "cost": self.cost}
        if selection_ms is not None:
            d["selection_ms"] = selection_ms
        return d


class Snapshot:
    """Peers prepared for routing: columns plus the edge order (sorted by start) every pass walks.

    Build once per view change; `route` calls are then a single linear pass (or a few, for LARAC).
    """

    def __init__(self, layers: int, peers: list[Peer] | tuple[Peer, ...]):
        if layers < 1:
            raise ValueError("layers must be >= 1")
        self.layers = layers
        valid, self.invalid = [], {}
        for p in peers:
            if not (0 <= p.start < p.end <= layers):
                self.invalid[p.id] = f"layer range {p.start}:{p.end} outside 0:{layers}"
            elif not (0.0 <= p.trust <= 1.0) or not (p.latency_ms >= 0.0) or math.isinf(p.latency_ms):
                self.invalid[p.id] = "trust outside [0,1] or latency not a finite non-negative number"
            else:
                valid.append(p)
        valid.sort(key=lambda p: (p.start, p.end, p.id))
        self.peers = valid
        self.start = [p.start for p in valid]
        self.end = [p.end for p in valid]
        self.trust = [p.trust for p in valid]
        self.lat = [p.latency_ms for p in valid]
        self.alive = [p.alive for p in valid]
        self.ids = [p.id for p in valid]
        self.by_id = {p.id: p for p in valid}

    def __len__(self) -> int:
        return len(self.peers)

    @classmethod
    def from_json(cls, doc) -> Snapshot:
        if not isinstance(doc, dict) or not isinstance(doc.get("layers"), int) or not isinstance(doc.get("peers"), list):
            raise UserError('snapshot must be {"layers": int, "peers": [...]}')
        peers = []
        for i, p in enumerate(doc["peers"]):
            try:
                peers.append(Peer(str(p["id"]), int(p["start"]), int(p["end"]), float(p["trust"]),
                                  float(p["latency_ms"]), bool(p.get("alive", True))))
            except (KeyError, TypeError, ValueError) as e:
                raise UserError(f"snapshot peers[{i}]: needs id, start, end, trust, latency_ms (alive optional): {e}") from None
        return cls(doc["layers"], peers)


# ------------------------------------------------------------------ passes


def _shortest(s: Snapshot, cost: list, src: int = 0) -> tuple[list[float], list[int]]:
    """DAG shortest path from `src` over edges with cost not None. Ties: lexicographically smaller peer id."""
    dist = [INF] * (s.layers + 1)
    pred = [-1] * (s.layers + 1)
    dist[src] = 0.0
    start, end, ids = s.start, s.end, s.ids
    for i, c in enumerate(cost):
        if c is None:
            continue
        d = dist[start[i]]
        if d == INF:
            continue
        nd = d + c
        e = end[i]
        de = dist[e]
        if nd < de or (nd == de and ids[i] < ids[pred[e]]):
            dist[e] = nd
            pred[e] = i
    return dist, pred


def _path(s: Snapshot, pred: list[int], src: int, dst: int) -> list[int]:
    out, v = [], dst
    while v != src:
        i = pred[v]
        out.append(i)
        v = s.start[i]
    out.reverse()
    return out


def _eligible(s: Snapshot, mode: str, params: Params) -> list[bool]:
    if mode == "g-trac":
        floor = params.trust_floor
        return [a and t >= floor for a, t in zip(s.alive, s.trust, strict=True)]
    return list(s.alive)


def _costs(s: Snapshot, ok: list[bool], kind: str, params: Params, lam: float = 0.0) -> list:
    if kind == "eff":
        pen = params.penalty_ms
        return [lt + (1.0 - t) * pen if k else None for k, lt, t in zip(ok, s.lat, s.trust, strict=True)]
    if kind == "lat":
        return [lt if k else None for k, lt in zip(ok, s.lat, strict=True)]
    if kind == "risk":
        return [-math.log(max(t, _TINY)) if k else None for k, t in zip(ok, s.trust, strict=True)]
    if kind == "lagr":
        return [lt - lam * math.log(max(t, _TINY)) if k else None for k, lt, t in zip(ok, s.lat, s.trust, strict=True)]
    raise AssertionError(kind)


def _make_route(s: Snapshot, mode: str, idx: list[int], params: Params, feasible: bool = True) -> Route:
    chain = [s.peers[i] for i in idx]
    return Route(mode, chain, sum(p.latency_ms for p in chain), math.prod(p.trust for p in chain),
                 sum(effective_latency(p, params.penalty_ms) for p in chain), feasible)


def _no_route(s: Snapshot, ok: list[bool], mode: str, params: Params, src: int = 0) -> NoRoute:
    reach = [False] * (s.layers + 1)
    reach[src] = True
    for i, k in enumerate(ok):
        if k and reach[s.start[i]]:
            reach[s.end[i]] = True
    frontier = max(v for v in range(s.layers + 1) if reach[v])
    later = [s.start[i] for i, k in enumerate(ok) if k and s.start[i] > frontier]
    upto = min(later) if later else s.layers
    what = f"live peer with trust >= {params.trust_floor:g}" if mode == "g-trac" else "live peer"
    if frontier == src and not any(k and s.start[i] == src for i, k in enumerate(ok)):
        msg = f"no {what} hosts layer {src} (layers {src}:{upto} are uncovered)"
    else:
        msg = f"no {what} starts at layer {frontier}: layers {frontier}:{upto} are uncovered"
    return NoRoute(msg, (frontier, upto))


def route(s: Snapshot, mode: str = "g-trac", params: Params = Params(), rng: random.Random | None = None,
          src: int = 0, exclude: frozenset[str] | set[str] = frozenset()) -> Route:
    """Choose a chain covering layers [src, L). Raises NoRoute naming the uncovered layer range."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    ok = _eligible(s, mode, params)
    if exclude:
        ok = [k and pid not in exclude for k, pid in zip(ok, s.ids, strict=True)]
    L = s.layers
    if mode == "naive":
        idx = _naive(s, ok, rng or random.Random(), src)
        if idx is None:
            raise _no_route(s, ok, mode, params, src)
        return _make_route(s, mode, idx, params)
    kind = {"g-trac": "eff", "sp": "lat", "mr": "risk", "larac": "lat"}[mode]
    dist, pred = _shortest(s, _costs(s, ok, kind, params), src)
    if dist[L] == INF:
        raise _no_route(s, ok, mode, params, src)
    if mode != "larac":
        return _make_route(s, mode, _path(s, pred, src, L), params)
    return _larac(s, ok, params, _path(s, pred, src, L), src)


def _larac(s: Snapshot, ok: list[bool], params: Params, pc: list[int], src: int) -> Route:
    """LARAC (Juttner et al.): min sum latency s.t. sum -log tau <= -log R_min, by Lagrangian relaxation."""
    bound = -math.log(max(params.min_reliability, _TINY)) + 1e-12

    def lat(p):
        return sum(s.lat[i] for i in p)

    def risk(p):
        return sum(-math.log(max(s.trust[i], _TINY)) for i in p)

    if risk(pc) <= bound:
        return _make_route(s, "larac", pc, params)
    dist, pred = _shortest(s, _costs(s, ok, "risk", params), src)
    pd = _path(s, pred, src, s.layers)
    if risk(pd) > bound:  # nothing meets R_min: fall back to the most reliable chain (MR)
        return _make_route(s, "larac", pd, params, feasible=False)
    for _ in range(params.larac_max_iter):
        dr = risk(pd) - risk(pc)
        if dr >= 0:
            break
        lam = (lat(pc) - lat(pd)) / (risk(pd) - risk(pc))
        dist, pred = _shortest(s, _costs(s, ok, "lagr", params, lam), src)
        r = _path(s, pred, src, s.layers)
        lr = lat(r) + lam * risk(r)
        if abs(lr - (lat(pc) + lam * risk(pc))) <= 1e-9 * max(1.0, abs(lr)):
            break
        if risk(r) <= bound:
            pd = r
        else:
            pc = r
    return _make_route(s, "larac", pd, params)


def _naive(s: Snapshot, ok: list[bool], rng: random.Random, src: int) -> list[int] | None:
    """Uniform over complete chains: count paths to L per vertex (backwards), then sample forward."""
    L = s.layers
    count = [0] * (L + 1)
    count[L] = 1
    out: list[list[int]] = [[] for _ in range(L + 1)]
    for i, k in enumerate(ok):
        if k:
            out[s.start[i]].append(i)
    for v in range(L - 1, src - 1, -1):
        count[v] = sum(count[s.end[i]] for i in out[v])
    if count[src] == 0:
        return None
    path, v = [], src
    while v != L:
        r = rng.randrange(count[v])
        for i in out[v]:
            r -= count[s.end[i]]
            if r < 0:
                path.append(i)
                v = s.end[i]
                break
    return path


def replacement(s: Snapshot, failed: Peer, params: Params = Params(),
                exclude: frozenset[str] | set[str] = frozenset()) -> Peer | None:
    """Bounded one-shot repair: a live peer for the same layer range with trust >= tau_min and the lowest
    effective latency, never the failed one (ties: smaller id)."""
    best, best_key = None, None
    for p in s.peers:
        if (p.start, p.end) != (failed.start, failed.end) or p.id == failed.id or p.id in exclude:
            continue
        if not p.alive or p.trust < params.trust_floor:
            continue
        key = (effective_latency(p, params.penalty_ms), p.id)
        if best_key is None or key < best_key:
            best, best_key = p, key
    return best


def explain(s: Snapshot, mode: str, params: Params) -> dict[str, str]:
    """Why each peer that can't be chosen is excluded."""
    out = dict(s.invalid)
    ok = _eligible(s, mode, params)
    fwd = [False] * (s.layers + 1)
    fwd[0] = True
    for i, k in enumerate(ok):
        if k and fwd[s.start[i]]:
            fwd[s.end[i]] = True
    back = [False] * (s.layers + 1)
    back[s.layers] = True
    for i in range(len(ok) - 1, -1, -1):
        if ok[i] and back[s.end[i]]:
            back[s.start[i]] = True
    for i, p in enumerate(s.peers):
        if not p.alive:
            out[p.id] = "dead (not heard within the liveness timeout)"
        elif not ok[i]:
            out[p.id] = f"trust {p.trust:.3f} below the floor {params.trust_floor:g}"
        elif not (fwd[p.start] and back[p.end]):
            out[p.id] = "on no complete chain (its neighbours' layer ranges are missing)"
    return out
