"""A contiguous layer range of a real transformer, loaded on its own.

Only the hosted tensors are read (`safe_open`); modules are built on the meta device and materialised
with `load_state_dict(assign=True)`. Families: Llama-style decoders (llama, mistral, qwen2, qwen3 — rotary
positions; gemma3_text — also sliding-window layers with their own rope base, scaled embeddings) and GPT-2
(learned positions). Pitfalls handled (../shared/notes/model.md, edge-models.md):
  * decoder layers use LOCAL cache slots (layer_idx renumbered), else mask/positions go silently wrong;
  * every Llama shard has its own rotary embedding (inv_freq computed, not on meta), absolute positions;
  * GPT-2 blocks are BUILT with their global index (attention scaling), then renumbered, and take the
    cache as a keyword;
  * tied lm_head: the last shard reads the embedding tensor;
  * layer types (Gemma 3): each layer gets the mask and rotary embedding of its own type (sliding window or
    full), built per shard; the cache keeps every position for every layer (a plain DynamicCache: crops for
    chat turns and speculative rollback work the same everywhere), the sliding mask limits what is attended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache
from transformers.masking_utils import create_causal_mask, create_sliding_window_causal_mask

from ..catalog.names import FAMILIES, unsupported
from ..errors import UserError
from .quant import quantize, tensor_bytes

LLAMA_LIKE = set(FAMILIES) - {"gpt2"}
MASKS = {"full_attention": create_causal_mask, "sliding_attention": create_sliding_window_causal_mask}


@dataclass
class ShardOutput:
    hidden: torch.Tensor | None  # [1, n, d] for non-last shards
    logits: torch.Tensor | None  # last shard only: [vocab] float32 of the last position ([n, vocab]: every one)


def num_layers(folder: Path) -> int:
    cfg = json.loads((Path(folder) / "config.json").read_text())
    return int(cfg.get("num_hidden_layers") or cfg.get("n_layer"))


class Shard:
    def __init__(self, folder: Path | str, start: int, end: int, dtype: torch.dtype = torch.float32,
                 scheme: str = "float32"):
        self.folder = Path(folder)
        self.config = AutoConfig.from_pretrained(str(self.folder))
        self.family = self.config.model_type
        if unsupported(self.family):
            raise UserError(f"{self.folder}: {unsupported(self.family)}")
        self.total = self.config.num_hidden_layers
        if not (0 <= start < end <= self.total):
            raise UserError(f"layer range {start}:{end} is outside the model's 0:{self.total}")
        self.start, self.end = start, end
        self.first, self.last = start == 0, end == self.total
        # each layer's attention type; a sliding window without layer types (Mistral) slides on every layer
        default = "sliding_attention" if getattr(self.config, "sliding_window", None) and \
            getattr(self.config, "use_sliding_window", True) else "full_attention"
        types = list(getattr(self.config, "layer_types", None) or [default] * self.total)
        self.types = types[start:end]  # each hosted layer's attention type
        if set(self.types) - set(MASKS):
            raise UserError(f"layer types {sorted(set(self.types) - set(MASKS))} not supported")
        self.dtype = dtype
        self.scheme = scheme  # engine.quant: the linear layers' weights as served
        self.config._attn_implementation = os.environ.get("GTRACD_ATTN", "sdpa")
        with torch.device("meta"):
            full = AutoModelForCausalLM.from_config(self.config, dtype=dtype)
        self._build(full)
        self.eval()

    # ---------------------------------------------------------------- construction
    def _build(self, full) -> None:
        mods: dict[str, torch.nn.Module] = {}
        if self.family in LLAMA_LIKE:
            base, prefix = full.model, "model."
            if self.first:
                mods[prefix + "embed_tokens"] = base.embed_tokens
            self.layers = torch.nn.ModuleList(base.layers[self.start:self.end])
            for local, layer in enumerate(self.layers):
                layer.self_attn.layer_idx = local
            if self.last:
                mods[prefix + "norm"] = base.norm
                mods["lm_head"] = full.lm_head
            rotary_cls = type(base.rotary_emb)
            self.rotary = rotary_cls(config=self.config)  # real inv_freq, never on meta
        else:  # gpt2
            base, prefix = full.transformer, "transformer."
            if self.first:
                mods[prefix + "wte"] = base.wte
                mods[prefix + "wpe"] = base.wpe
            self.layers = torch.nn.ModuleList(base.h[self.start:self.end])  # built with global idx: scaling right
            for local, block in enumerate(self.layers):
                block.attn.layer_idx = local
            if self.last:
                mods[prefix + "ln_f"] = base.ln_f
                mods["lm_head"] = full.lm_head
            self.rotary = None
        for local, layer in enumerate(self.layers):
            mods[f"{prefix}{'layers' if self.family in LLAMA_LIKE else 'h'}.{self.start + local}"] = layer
        self._load(mods, prefix)
        self.embed = mods.get(prefix + ("embed_tokens" if self.family in LLAMA_LIKE else "wte"))
        self.wpe = mods.get(prefix + "wpe")
        self.norm = mods.get(prefix + ("norm" if self.family in LLAMA_LIKE else "ln_f"))
        self.lm_head = mods.get("lm_head")

    def _load(self, mods: dict[str, torch.nn.Module], prefix: str) -> None:
        files = sorted(self.folder.glob("*.safetensors"))
        index: dict[str, Path] = {}
        for f in files:
            with safe_open(str(f), framework="pt") as st:
                for k in st.keys():
                    index[k] = f

        def find(name: str) -> str | None:
            if name in index:
                return name
            alt = name[len(prefix):] if name.startswith(prefix) else None  # old GPT-2 checkpoints: no prefix
            return alt if alt in index else None

        for mname, mod in list(mods.items()):
            # the files are mapped per module and unmapped after it: the pages of a module read from them leave
            # the process with it, so peak memory is the loaded (quantized) modules plus one module being read
            handles: dict[Path, object] = {}
            try:
                state = {}
                buffers = {n for n, _ in mod.named_buffers()}
                for pname, _ in list(mod.named_parameters()) + list(mod.named_buffers()):
                    full_name = f"{mname}.{pname}"
                    key = find(full_name)
                    if key is None and mname == "lm_head" and pname == "weight":
                        emb = prefix + ("embed_tokens.weight" if self.family in LLAMA_LIKE else "wte.weight")
                        key = find(emb)  # tied embeddings
                    if key is None:
                        if pname in buffers:
                            continue  # non-persistent buffers (e.g. GPT-2's bias mask) stay computed
                        raise UserError(f"{self.folder}: tensor {full_name} not found in the safetensors files")
                    f = index[key]
                    if f not in handles:
                        handles[f] = safe_open(str(f), framework="pt").__enter__()
                    state[pname] = handles[f].get_tensor(key).to(self.dtype)
            finally:
                for h in handles.values():
                    h.__exit__(None, None, None)
            missing = {n for n, p in mod.named_parameters()} - set(state)
            if missing:
                raise UserError(f"{self.folder}: no weights for {mname}.{sorted(missing)[0]}")
            mod.load_state_dict(state, strict=False, assign=True)
            for n, b in list(mod.named_buffers()):
                if b.is_meta and not _rebuilt(mod, n):  # buffers not in the checkpoint: computed on CPU
                    raise UserError(f"{self.folder}: buffer {mname}.{n} has no value")
            del state
            if self.scheme != "float32":
                # quantized as soon as it is loaded: peak memory is one float32 module over the quantized rest;
                # what stays float (norms, biases, the embedding) is copied off the file mapping, which would
                # otherwise keep every page of the module read from it resident
                mods[mname] = quantize(mod, self.scheme)
                for t in list(mods[mname].parameters()) + list(mods[mname].buffers()):
                    if t.is_floating_point():
                        t.data = t.data.clone()

    def layer_bytes(self) -> list[int]:
        """Bytes each hosted decoder layer's tensors hold (as served: quantized or not)."""
        return [tensor_bytes(layer) for layer in self.layers]

    def eval(self) -> None:
        for m in (self.layers, self.embed, self.wpe, self.norm, self.lm_head, self.rotary):
            if m is not None:
                m.eval()

    # ---------------------------------------------------------------- compute
    def new_cache(self) -> DynamicCache:
        return DynamicCache()

    def run_layers(self, x: torch.Tensor, masks: dict | None, position_ids: torch.Tensor, cache) -> torch.Tensor:
        """The hosted decoder layers over x [batch, n, d] at absolute `position_ids` [batch, n], extending
        `cache` (a DynamicCache, or a batch's stand-in: engine/batching.py); `masks`: per layer type (None:
        one position per row, nothing to mask beyond the sliding window the attention applies)."""
        if self.family in LLAMA_LIKE:
            if hasattr(self.rotary, "layer_types"):  # a rope per layer type (Gemma 3)
                pe = {t: self.rotary(x, position_ids, t) for t in set(self.types)}
            else:
                pe = dict.fromkeys(set(self.types), self.rotary(x, position_ids=position_ids))
            for t, layer in zip(self.types, self.layers, strict=True):
                x = layer(x, attention_mask=None if masks is None else masks[t], position_embeddings=pe[t],
                          position_ids=position_ids, past_key_values=cache, use_cache=True)
        else:
            for block in self.layers:
                x = block(x, past_key_values=cache, attention_mask=None if masks is None else masks["full_attention"],
                          use_cache=True, position_ids=position_ids)
                if isinstance(x, tuple):
                    x = x[0]
        return x

    @torch.inference_mode()
    def forward(self, cache: DynamicCache, pos: int, input_ids: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None, every: bool = False) -> ShardOutput:
        """Extend the session by n positions starting at absolute position `pos` (== cached length). `every`:
        the last shard's logits at every position (a speculative step), not only the last one's."""
        if self.first:
            x = self.embed(input_ids.view(1, -1))
            n = x.shape[1]
        else:
            x = hidden.to(self.dtype).view(1, -1, self.config.hidden_size)
            n = x.shape[1]
        position_ids = torch.arange(pos, pos + n).unsqueeze(0)
        if self.family == "gpt2" and self.first:
            x = x + self.wpe(position_ids)
        masks = {t: MASKS[t](config=self.config, inputs_embeds=x, attention_mask=None, past_key_values=cache,
                             position_ids=position_ids) for t in set(self.types)}
        x = self.run_layers(x, masks, position_ids, cache)
        if not self.last:
            return ShardOutput(x, None)
        if every:
            return ShardOutput(None, self.head(x)[0].float())
        return ShardOutput(None, self.head(x[:, -1:, :])[0, -1].float())

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the last shard's hidden states (final norm, head, the family's soft cap)."""
        logits = self.lm_head(self.norm(x))
        cap = getattr(self.config, "final_logit_softcapping", None)
        return logits if not cap else torch.tanh(logits / cap) * cap


def _rebuilt(mod: torch.nn.Module, name: str) -> bool:
    """Compute a non-persistent buffer a module built on the meta device (True if it is one we know)."""
    owner_name, _, leaf = name.rpartition(".")
    owner = mod.get_submodule(owner_name) if owner_name else mod
    if leaf == "embed_scale" and hasattr(owner, "scalar_embed_scale"):  # Gemma's scaled embedding
        owner.register_buffer("embed_scale", torch.tensor(owner.scalar_embed_scale), persistent=False)
        return True
    return False


def crop(cache: DynamicCache, pos: int) -> DynamicCache:
    """Drop cached positions >= pos (chat turns that diverge, replays)."""
    n = cache.get_seq_length()
    if pos >= n:
        return cache
    if pos == 0:
        return DynamicCache()
    cache.crop(pos - n)
    return cache
