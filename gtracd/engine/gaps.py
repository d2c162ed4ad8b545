"""How far apart honest replicas' outputs can be, and how far a lie puts them (torch side of the spot-check
tolerance, seeker/spotcheck.py; used by `gtracd bench attack --only tolerance`).

Each figure is max |a - b| / max |b| over a 48-token prefill and 8 decode steps of one shard: honest pairs
(another torch thread count, decode steps merged into one chunk as a repair replays them) and lies (noise at
the activations' own std, and at 1 % of it).
"""

from __future__ import annotations

from pathlib import Path

import torch

from .shard import Shard


def output_gaps(folder: Path, start: int, end: int) -> dict:
    sh = Shard(folder, start, end)
    g = torch.Generator().manual_seed(0)
    width = sh.config.hidden_size
    prompt = torch.randn(1, 48, width, generator=g) * 3
    steps = [torch.randn(1, 1, width, generator=g) * 3 for _ in range(8)]
    threads = torch.get_num_threads()

    def run(n: int, merged: bool = False):
        torch.set_num_threads(n)
        c = sh.new_cache()
        first = sh.forward(c, 0, hidden=prompt).hidden
        if merged:
            last = sh.forward(c, 48, hidden=torch.cat(steps, 1)).hidden[:, -1:]
        else:
            for k, x in enumerate(steps):
                last = sh.forward(c, 48 + k, hidden=x).hidden
        return first, last

    def rel(a, b) -> float:
        return float((a - b).abs().max() / b.abs().max())

    try:
        one, two, merged, again = run(1), run(2), run(1, merged=True), run(1)
    finally:
        torch.set_num_threads(threads)
    h = one[1]
    noise = torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
    return {"honest_same_kernels_identical": all(torch.equal(a, b) for a, b in zip(one, again, strict=True)),
            "honest_threads_1_vs_2": max(rel(two[0], one[0]), rel(two[1], one[1])),
            "honest_single_vs_merged_steps": rel(merged[1], one[1]),
            "lie_noise_at_std": rel(h + noise * h.std(), h),
            "lie_noise_at_1pct_std": rel(h + noise * h.std() * 0.01, h)}
