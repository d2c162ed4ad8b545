"""Tiny random models saved with save_pretrained: they exercise the real loading code in milliseconds."""

from __future__ import annotations

from pathlib import Path


def tiny_llama(path: Path, layers: int = 6, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, eos_token_id=2, bos_token_id=1)
    LlamaForCausalLM(cfg).eval().save_pretrained(str(path))
    return path


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
