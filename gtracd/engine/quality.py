"""How close a quantized model stays to float32 (torch): greedy agreement, teacher-forced top-1 agreement and
perplexity, each scheme run as one shard holding the whole model (`gtracd bench quant`)."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from transformers import AutoTokenizer

from ..catalog.fingerprint import depth
from .quant import Int8Linear
from .shard import Shard

FLOAT32_PRODUCTS = "/float32-compute"  # a scheme suffix: its weights, multiplied in float32 (attribution)


def compare(folder: Path, schemes: tuple[str, ...], prompts: list[str], text: str, tokens: int) -> dict:
    """Per scheme (the first is the reference): how many chat `prompts` give the reference's first `tokens`
    greedy tokens exactly (`agreement`), the share of positions whose top choice is the reference's when fed
    the reference's tokens (`teacher_forced_top1`), and perplexity on `text`."""
    tok = AutoTokenizer.from_pretrained(str(folder))
    chats = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
             for p in prompts]
    chats = [c if isinstance(c, list) else c["input_ids"] for c in chats]
    ids_text = tok(text)["input_ids"]
    out: dict = {}
    ref: list[list[int]] = []
    for scheme in schemes:
        shard = Shard(folder, 0, depth(folder), scheme=scheme.removesuffix(FLOAT32_PRODUCTS))
        if scheme.endswith(FLOAT32_PRODUCTS):
            for m in [*shard.layers.modules(), shard.lm_head]:
                if isinstance(m, Int8Linear):
                    m.forward = _float32_product(m)
        greedy, tf_same, tf_total = [], 0, 0
        for k, ids in enumerate(chats):
            greedy.append(_greedy(shard, ids, tokens))
            if ref:  # the reference's tokens fed: does this scheme choose the same at every position?
                seq = ids + ref[k][:-1]
                lg = shard.forward(shard.new_cache(), 0, input_ids=torch.tensor(seq), every=True).logits
                chosen = lg[len(ids) - 1:].argmax(-1).tolist()
                tf_same += sum(int(a == b) for a, b in zip(chosen, ref[k], strict=True))
                tf_total += len(ref[k])
        lg = shard.forward(shard.new_cache(), 0, input_ids=torch.tensor(ids_text), every=True).logits
        nll = torch.nn.functional.cross_entropy(lg[:-1], torch.tensor(ids_text[1:]))
        ref = ref or greedy
        out[scheme] = {"agreement": sum(int(g == r) for g, r in zip(greedy, ref, strict=True)),
                       "teacher_forced_top1": round(tf_same / tf_total, 4) if tf_total else 1.0,
                       "perplexity": round(math.exp(float(nll)), 3)}
        del shard
    return out


def _greedy(shard: Shard, ids: list[int], tokens: int) -> list[int]:
    cache, toks = shard.new_cache(), []
    o = shard.forward(cache, 0, input_ids=torch.tensor(ids))
    for i in range(tokens):
        toks.append(int(o.logits.argmax()))
        if i + 1 < tokens:
            o = shard.forward(cache, len(ids) + i, input_ids=torch.tensor([toks[-1]]))
    return toks


def _float32_product(m: Int8Linear):
    w = m.dequantized()
    return lambda x: torch.nn.functional.linear(x, w, m.bias)
