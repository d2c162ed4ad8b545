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


def tiny_qwen(path: Path, family: str = "qwen2", layers: int = 6, seed: int = 0) -> Path:
    """A random Qwen2- or Qwen3-style model (q/k/v biases; Qwen3: per-head q/k norms)."""
    import torch
    from transformers import AutoModelForCausalLM, Qwen2Config, Qwen3Config

    torch.manual_seed(seed)
    cls = Qwen2Config if family == "qwen2" else Qwen3Config
    cfg = cls(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers, num_attention_heads=4,
              num_key_value_heads=2, head_dim=16, max_position_embeddings=1024, tie_word_embeddings=True,
              eos_token_id=2, bos_token_id=1)
    AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(str(path))
    return path


def tiny_gemma3(path: Path, layers: int = 6, seed: int = 0, window: int = 8) -> Path:
    """A random Gemma 3 text model: sliding-window layers (a small window, so short tests cross it) with a
    global layer every third, two rope bases, scaled embeddings, tied head."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    torch.manual_seed(seed)
    cfg = Gemma3TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=1024,
                           sliding_window=window, sliding_window_pattern=3, tie_word_embeddings=True,
                           eos_token_id=2, bos_token_id=1, pad_token_id=0)
    AutoModelForCausalLM.from_config(cfg).eval().save_pretrained(str(path))
    return path
