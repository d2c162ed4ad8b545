"""Selection time per mode at edge-to-large scale, measured on synthetic networks (`gtracd bench routing` prints
it; the lab's selection figure draws it).

36 layers, peers host shards of 3, 6 or 9 layers starting on multiples of 3 (so hand-overs exist), with a
mix of trustworthy peers and fast-but-unreliable honey pots. Selection is timed on a prepared Snapshot (the
seeker rebuilds it only when its view changes); the build time is reported separately.
"""

from __future__ import annotations

import random
import statistics
import time

from .core import MODES, Params, Peer, Snapshot, route

SIZES = (36, 112, 336, 1_000, 10_000, 100_000)


def make_peers(n: int, rng: random.Random, layers: int = 36) -> list[Peer]:
    peers = []
    for i in range(n):
        size = (3, 6, 9)[i % 3]
        start = 3 * rng.randrange(0, (layers - size) // 3 + 1)
        honeypot = rng.random() < 0.2
        trust = rng.uniform(0.3, 0.9) if honeypot else rng.uniform(0.95, 1.0)
        lat = rng.uniform(5, 40) if honeypot else rng.uniform(20, 400)
        peers.append(Peer(f"peer{i:06d}", start, start + size, trust, lat * size / 3, rng.random() > 0.05))
    # make sure a complete trusted chain exists at every size
    for k in range(12):
        peers.append(Peer(f"base{k:02d}", 3 * k, 3 * k + 3, 0.99, 500.0))
    return peers[: max(n, 12)] if n >= 12 else peers


def _reps(n: int) -> int:
    return 400 if n <= 1000 else (60 if n <= 10_000 else 12)


def run(sizes=SIZES, modes=MODES, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    params = Params()
    out = []
    for n in sizes:
        peers = make_peers(n, rng)
        t0 = time.perf_counter()
        snap = Snapshot(36, peers)
        build_ms = (time.perf_counter() - t0) * 1e3
        for mode in modes:
            r = random.Random(seed)
            route(snap, mode, params, rng=r)  # warm
            times = []
            for _ in range(_reps(n)):
                t = time.perf_counter()
                route(snap, mode, params, rng=r)
                times.append((time.perf_counter() - t) * 1e3)
            times.sort()
            out.append({"mode": mode, "peers": n, "p50_ms": round(statistics.median(times), 4),
                        "p99_ms": round(times[min(len(times) - 1, int(0.99 * len(times)))], 4),
                        "snapshot_build_ms": round(build_ms, 3)})
    return out
