"""Model names and where prepared models live (torch-free)."""

from __future__ import annotations

import os
import re
from pathlib import Path

BUILTIN = {"smollm2-135m": "SmolLM2-135M-Instruct", "gemma3-270m": "Gemma 3 270M (base model)"}
TINY_RE = re.compile(r"^tiny-llama-(\d{1,3})$")
# the model families a shard can host (config.json's model_type); anything else is refused at `model prepare`
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma3_text", "gpt2")


def unsupported(model_type) -> str | None:
    """Why a model of this `model_type` cannot be served (None: it can)."""
    if model_type in FAMILIES:
        return None
    return (f"model type {model_type!r} is not supported; gtracd serves: {', '.join(FAMILIES)} (Llama-style "
            f"decoders including Mistral, Qwen2, Qwen3 and Gemma 3 text models, and GPT-2)")


def model_cache_dir() -> Path:
    env = os.environ.get("GTRACD_MODEL_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("GTRACD_HOME")
    return (Path(home) if home else Path.home() / ".gtracd") / "models"
