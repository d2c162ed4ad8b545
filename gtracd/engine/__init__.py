"""The model stack (torch + transformers). The only package that imports them; workers only. This module is
the torch-free door (imported at the top by anyone): it imports torch only inside its functions."""

from __future__ import annotations

from ..errors import UserError


def require_torch():
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as e:
        raise UserError(f"workers need the model stack ({e.name} missing): pip install 'gtracd[worker]'") from None


def set_threads(n: int) -> None:
    """torch's intra-op threads for this process (one per worker process when there are more than cores)."""
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
