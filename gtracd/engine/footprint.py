"""Bytes a layer range of a model costs, torch-free: read from the safetensors headers (shapes only), at
float32 as shards load. Self-placing workers size their range with it (membership.placement)."""

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


def footprint(folder: Path | str) -> Footprint:
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    total = int(cfg.get("num_hidden_layers") or cfg.get("n_layer"))
    layer = [0] * total
    first = last = embed = 0
    head = False
    for f in sorted(folder.glob("*.safetensors")):
        for name, t in _header(f).items():
            n = math.prod(t["shape"]) * FLOAT32
            m = LAYER.search(name)
            if m:
                i = int(m.group(1))
                if i < total:
                    layer[i] += n
            elif any(k in name for k in FIRST):
                first += n
                if "embed_tokens" in name or "wte" in name:
                    embed = n
            elif any(k in name for k in LAST):
                last += n
                head = head or "lm_head" in name
    if not head and cfg.get("tie_word_embeddings", True):
        last += embed  # a tied head: the last shard reads the embedding tensor
    return Footprint(tuple(layer), first, last)
