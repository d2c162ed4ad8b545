"""Model names and where prepared models live (torch-free)."""

from __future__ import annotations

import os
import re
from pathlib import Path

BUILTIN = {"smollm2-135m": "SmolLM2-135M-Instruct"}
TINY_RE = re.compile(r"^tiny-llama-(\d{1,3})$")


def model_cache_dir() -> Path:
    env = os.environ.get("GTRACD_MODEL_CACHE")
    if env:
        return Path(env)
    home = os.environ.get("GTRACD_HOME")
    return (Path(home) if home else Path.home() / ".gtracd") / "models"
