"""Tiny random models saved with save_pretrained: they exercise the real loading code in milliseconds."""

from __future__ import annotations

from pathlib import Path


def tiny_llama(path: Path, layers: int = 6, seed: int = 0) -> Path:
    from gtracd.engine.models import tiny_llama as build

    return build(path, layers, seed)


def tiny_gpt2(path: Path, layers: int = 6, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=256, n_embd=64, n_layer=layers, n_head=4, n_positions=512,
                     scale_attn_by_inverse_layer_idx=True, eos_token_id=2, bos_token_id=1)
    GPT2LMHeadModel(cfg).eval().save_pretrained(str(path))
    return path


def char_tokenizer(path: Path) -> Path:
    from gtracd.engine.models import char_tokenizer as build

    return build(path)
