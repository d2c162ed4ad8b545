"""Weight-only quantization of a shard's linear layers (torch).

`int8`: every linear layer's weight becomes int8, symmetric, one scale per output channel (|w| max / 127);
activations stay float. The product runs in torch's int8 weight-only CPU kernel (`_weight_int8pack_mm`),
which is fast only with bfloat16 activations (measured: 34 µs against 74 µs for the float32 matmul of one
576×1536 projection, and 708 µs with float32 activations): so a quantized linear casts its input to
bfloat16 for the product and its output back to float32. Norms, attention, rotary embeddings, residuals and
the embedding lookup stay float32. The last shard's head is quantized too (a tied head gets its own int8
copy; the lookup keeps the float32 embedding).

Each module is quantized as soon as its float32 weights are loaded (engine.shard), so a worker's peak memory
is its quantized range plus one float32 layer, never the float32 range.

The scheme is part of what a worker serves: its fingerprint covers it (catalog.fingerprint.scheme_weights),
so seekers pin it and spot checks compare int8 with int8.
"""

from __future__ import annotations

import torch
from transformers.pytorch_utils import Conv1D

ROWS = 256  # output channels quantized at a time


class Int8Linear(torch.nn.Module):
    """y = x W^T + b with W int8 [out, in] and a bfloat16 scale per output channel."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        w = weight.detach()
        scale = (w.abs().amax(dim=1).float() / 127.0).clamp(min=1e-12)
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        q = torch.empty(w.shape, dtype=torch.int8)
        for a in range(0, w.shape[0], ROWS):  # in slices of rows: no float32 temporaries of the whole weight
            q[a:a + ROWS] = (w[a:a + ROWS].float() / scale[a:a + ROWS, None]).round_().clamp_(-127, 127)
        self.register_buffer("qweight", q)
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        y = torch._weight_int8pack_mm(x.reshape(-1, self.in_features).to(torch.bfloat16), self.qweight, self.scale)
        y = y.to(torch.float32).reshape(*shape, self.out_features)
        return y if self.bias is None else y + self.bias

    def dequantized(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()[:, None]


def quantize(module: torch.nn.Module, scheme: str) -> torch.nn.Module:
    """Replace every linear layer inside `module` (or `module` itself) by its quantized form, in place where
    it is a child; returns the (possibly new) module."""
    if scheme == "float32":
        return module
    if scheme != "int8":
        raise ValueError(f"unknown quantization scheme {scheme!r}")
    own = _one(module)
    if own is not None:
        return own
    for name, child in list(module.named_children()):
        setattr(module, name, quantize(child, scheme))
    return module


def _one(m: torch.nn.Module) -> Int8Linear | None:
    if isinstance(m, torch.nn.Linear):
        return Int8Linear(m.weight, m.bias)
    if isinstance(m, Conv1D):  # GPT-2's linear layers: weight stored [in, out]
        return Int8Linear(m.weight.t(), m.bias)
    return None


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes a module's parameters and buffers hold."""
    seen, n = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if t is not None and id(t) not in seen and not t.is_meta:
            seen.add(id(t))
            n += t.numel() * t.element_size()
    return n
