"""Token sampling on the last hop: greedy, or temperature / top-k / top-p with a seed.

Stateless per position: the generator is seeded from (seed, position), so a replacement worker that
takes over after a failure samples exactly what the failed one would have.
"""

from __future__ import annotations

import hashlib

import torch


def sample(logits: torch.Tensor, position: int, temperature: float = 0.0, top_k: int = 0, top_p: float = 1.0,
           seed: int = 0) -> int:
    if temperature <= 0.0:
        return int(torch.argmax(logits))
    x = logits.float() / temperature
    if top_k and top_k < x.numel():
        kth = torch.topk(x, top_k).values[-1]
        x = torch.where(x < kth, torch.full_like(x, float("-inf")), x)
    probs = torch.softmax(x, dim=-1)
    if top_p < 1.0:
        sp, si = torch.sort(probs, descending=True)
        cum = torch.cumsum(sp, dim=-1)
        drop = cum - sp > top_p  # keep the smallest prefix whose mass reaches top_p (always >= 1 token)
        sp = sp.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(0, si, sp)
        probs = probs / probs.sum()
    g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(f"{seed}:{position}".encode()).digest()[:8],
                                                     "little") & (2**63 - 1))
    return int(torch.multinomial(probs, 1, generator=g))
