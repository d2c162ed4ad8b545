"""Bytes a layer range of a model costs, torch-free: read from the safetensors headers (shapes only), as a
shard holds them: float32, or with `--quantize int8` every linear weight as int8 plus a bfloat16 scale per
output channel (engine.quant; the embedding and norms stay float32). Self-placing workers size their range
with it (membership.placement); tests check it against a loaded shard's tensors."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..catalog.fingerprint import _header
from ..membership.placement import Footprint

LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+)\.")
FIRST = ("embed_tokens", "wte", "wpe")
LAST = ("lm_head", "ln_f", "norm")
FLOAT32 = 4
SCALE = 2  # bfloat16, one per output channel of a quantized linear weight
NOT_LINEAR = ("embed", "wte", "wpe", "norm", "ln_")


def tensor_bytes(name: str, shape: list[int], scheme: str, gpt2: bool) -> int:
    """Bytes of one checkpoint tensor as a shard serves it."""
    n = math.prod(shape)
    if scheme == "float32" or len(shape) != 2 or not name.endswith(".weight") or any(k in name for k in NOT_LINEAR):
        return n * FLOAT32
    out = shape[1] if gpt2 else shape[0]  # GPT-2's Conv1D stores [in, out]
    return n + out * SCALE


def footprint(folder: Path | str, scheme: str = "float32") -> Footprint:
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    gpt2 = cfg.get("model_type") == "gpt2"
    total = int(cfg.get("num_hidden_layers") or cfg.get("n_layer"))
    layer = [0] * total
    first = last = embed = 0
    head = False
    for f in sorted(folder.glob("*.safetensors")):
        for name, t in _header(f).items():
            if name.endswith((".attn.bias", ".attn.masked_bias")) and len(t["shape"]) == 4:
                continue  # old GPT-2 checkpoints' causal masks: a shard computes its own
            n = tensor_bytes(name, t["shape"], scheme, gpt2)
            m = LAYER.search(name)
            if m:
                i = int(m.group(1))
                if i < total:
                    layer[i] += n
            elif any(k in name for k in FIRST):
                first += n
                if "embed_tokens" in name or "wte" in name:
                    embed = n if scheme == "float32" else tensor_bytes("lm_head.weight", t["shape"], scheme, False)
            elif any(k in name for k in LAST):
                last += n
                head = head or "lm_head" in name
    if not head and cfg.get("tie_word_embeddings", True):
        last += embed  # a tied head: the last shard reads the embedding tensor (its own int8 copy when quantized)
    return Footprint(tuple(layer), first, last)
