"""torch <-> wire tensors. Zero-copy both ways where possible; never pickle, never torch.load."""

from __future__ import annotations

import warnings

import torch

from ..errors import DecodeError
from ..wire import WireTensor, encode_tensor

TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int64": torch.int64,
         "int32": torch.int32}
NAMES = {v: k for k, v in TORCH.items()}


def to_wire(t: torch.Tensor) -> dict:
    t = t.detach().contiguous()
    name = NAMES.get(t.dtype)
    if name is None:
        raise DecodeError(f"dtype {t.dtype} cannot travel", "tensor.dtype")
    view = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bfloat16
    return encode_tensor(name, tuple(t.shape), memoryview(view.numpy()).cast("B"))


def from_wire(w: WireTensor) -> torch.Tensor:
    """Zero-copy view on the received bytes (read-only; layers never write their input)."""
    if w.numel == 0:
        return torch.empty(w.shape, dtype=TORCH[w.dtype])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "non-writable buffer": intended
        return torch.frombuffer(w.data, dtype=TORCH[w.dtype]).view(w.shape)
