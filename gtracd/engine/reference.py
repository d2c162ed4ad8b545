"""The monolithic reference: the whole model in one process, greedy decoding with a KV cache.

What shards are checked against (tests) and measured against (`gtracd bench pipeline`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache


@dataclass
class GreedyRun:
    tokens: list[int]
    logits: list[torch.Tensor] = field(repr=False)  # last-position logits before each sampled token
    prefill_ms: float
    decode_s: float  # time of the decode steps after the first token


def load(folder: Path | str):
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="sdpa").eval()


def chat_ids(folder: Path | str, messages: list[dict]) -> tuple[list[int], object]:
    tok = AutoTokenizer.from_pretrained(str(folder))
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return (ids if isinstance(ids, list) else ids["input_ids"]), tok


@torch.inference_mode()
def greedy(model, prompt: list[int], steps: int) -> GreedyRun:
    cache = DynamicCache()
    t0 = time.perf_counter()
    out = model(torch.tensor([prompt]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    prefill_ms = (time.perf_counter() - t0) * 1e3
    logits, toks = [], []
    t1 = time.perf_counter()
    for i in range(steps):
        lg = out.logits[0, -1]
        logits.append(lg)
        toks.append(int(lg.argmax()))
        if i + 1 < steps:
            out = model(torch.tensor([[toks[-1]]]), past_key_values=cache, use_cache=True, logits_to_keep=1)
    return GreedyRun(toks, logits, prefill_ms, time.perf_counter() - t1)
