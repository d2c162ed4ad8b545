"""`gtracd bench routing`: selection time per mode at edge-to-large scale.

36 layers, peers host shards of 3, 6 or 9 layers starting on multiples of 3 (so hand-overs exist), with a
mix of trustworthy peers and fast-but-unreliable honey pots. Selection is timed on a prepared Snapshot (the
seeker rebuilds it only when its view changes); the build time is reported separately.
"""

from __future__ import annotations

import argparse
import json

from ..routing.timing import SIZES, run


def main(args: argparse.Namespace) -> int:
    sizes = tuple(int(x) for x in args.sizes.split(",")) if args.sizes else SIZES
    rows = run(sizes)
    if args.json:
        print(json.dumps(rows))
        return 0
    from rich.console import Console
    from rich.table import Table

    t = Table(title="routing selection time (36 layers; prepared snapshot)")
    for c in ("mode", "peers", "p50 ms", "p99 ms", "snapshot build ms"):
        t.add_column(c, justify="right")
    for r in rows:
        t.add_row(r["mode"], f"{r['peers']:,}", f"{r['p50_ms']:.3f}", f"{r['p99_ms']:.3f}", f"{r['snapshot_build_ms']:.1f}")
    Console().print(t)
    return 0
