"""Batched decoding over per-session KV caches (continuous batching, the compute half).

Decode steps of different sessions (one new position each, at different cache lengths) run as one forward
pass: the projections and MLPs — where a step's time goes on a CPU, reading the weights — see a batch of B
rows instead of B passes of one row. Attention stays per session: `SessionsCache` appends each row's keys and
values to that session's own DynamicCache and hands the attention the per-session tensors, which
`sessions_attention` attends one session at a time with the same SDPA call an unbatched step makes. No
padding, no copies of caches, and a session leaves or joins the batch between any two steps.

The attention implementation is registered with transformers under ATTN and switched on only for the
duration of a batched call (the shard's modules share its config); unbatched calls are untouched.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.modeling_utils import AttentionInterface

ATTN = "gtracd_sessions"


class PerSession:
    """Keys (or values) of each row's own session: [1, kv_heads, length_b, head_dim] per row."""

    __slots__ = ("rows",)

    def __init__(self, rows: list[torch.Tensor]):
        self.rows = rows


class SessionsCache:
    """Stands in for a transformers Cache during a batched step: row b of the batch belongs to caches[b]."""

    def __init__(self, caches: list[DynamicCache]):
        self.caches = caches

    def update(self, keys: torch.Tensor, values: torch.Tensor, layer_idx: int, *args, **kwargs):
        ks, vs = [], []
        for b, cache in enumerate(self.caches):
            k, v = cache.update(keys[b:b + 1], values[b:b + 1], layer_idx)
            ks.append(k)
            vs.append(v)
        return PerSession(ks), PerSession(vs)


def sessions_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kwargs):
    """Attention for a batch of single-position queries, each over its own session's keys and values."""
    if not isinstance(key, PerSession):  # (only batched calls select this implementation)
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    w = kwargs.get("sliding_window")  # a sliding-window layer (Gemma 3): a step attends its last w positions
    out = [sdpa_attention_forward(module, query[b:b + 1], key.rows[b] if not w else key.rows[b][:, :, -w:],
                                  value.rows[b] if not w else value.rows[b][:, :, -w:], None, dropout=dropout,
                                  scaling=scaling)[0] for b in range(query.shape[0])]
    return torch.cat(out, 0), None


AttentionInterface.register(ATTN, sessions_attention)


@torch.inference_mode()
def forward_steps(shard, caches: list[DynamicCache], positions: list[int], input_ids: list[int] | None = None,
                  hidden: list[torch.Tensor] | None = None) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
    """One decode step for each of B sessions: row b extends caches[b] at absolute position positions[b]
    (== its cached length) with input_ids[b] (first shard) or hidden[b] ([1, 1, d], other shards). Returns
    (each row's hidden state [1, 1, d], None) for a shard that is not last, or (None, logits [B, vocab]
    float32) for the last."""
    cfg, b = shard.config, len(caches)
    if shard.first:
        x = shard.embed(torch.tensor(input_ids, dtype=torch.long).view(b, 1))
    else:
        x = torch.cat([h.to(shard.dtype).view(1, 1, cfg.hidden_size) for h in hidden], 0)
    position_ids = torch.tensor(positions, dtype=torch.long).view(b, 1)
    if shard.family == "gpt2" and shard.first:
        x = x + shard.wpe(position_ids)
    cache = SessionsCache(caches)
    was = cfg._attn_implementation
    cfg._attn_implementation = ATTN
    try:
        x = shard.run_layers(x, None, position_ids, cache)  # one position per row: no mask
    finally:
        cfg._attn_implementation = was
    if not shard.last:
        return [x[i:i + 1] for i in range(b)], None
    return None, shard.head(x)[:, -1].float()
