"""The model stack (torch + transformers). The only package that imports them; workers only."""

from __future__ import annotations

from ..errors import UserError


def require_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(f"workers need the model stack ({e.name} missing): pip install 'gtracd[worker]'") from None
