"""Tensor codec: {dtype, shape, data}. No pickle, no torch here (engine converts, zero-copy).

bfloat16 travels as its raw 2-byte pattern (an int16 view): numpy has no bfloat16.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import DecodeError

DTYPES = {"float32": 4, "float16": 2, "bfloat16": 2, "int64": 8, "int32": 4}
MAX_ELEMENTS = 1 << 24  # 16 M elements (64 MiB of fp32) per tensor unless a tighter cap is given
MAX_DIMS = 8


@dataclass(frozen=True)
class WireTensor:
    dtype: str
    shape: tuple[int, ...]
    data: memoryview  # read-only view into the received buffer (no copy)

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def encode_tensor(dtype: str, shape, data) -> dict:
    if dtype not in DTYPES:
        raise DecodeError(f"dtype {dtype!r} not allowed", "tensor.dtype")
    shape = [int(s) for s in shape]
    mv = memoryview(data).cast("B")
    if math.prod(shape) * DTYPES[dtype] != len(mv):
        raise DecodeError("shape x itemsize != len(data)", "tensor.data")
    return {"dtype": dtype, "shape": shape, "data": mv}


def decode_tensor(obj, path: str = "tensor", max_elements: int | None = None) -> WireTensor:
    cap = MAX_ELEMENTS if max_elements is None else max_elements
    if not isinstance(obj, dict) or set(obj) != {"dtype", "shape", "data"}:
        raise DecodeError("tensor must be a map with exactly dtype, shape, data", path)
    dtype, shape, data = obj["dtype"], obj["shape"], obj["data"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise DecodeError(f"dtype {dtype!r} not in the allow-list {sorted(DTYPES)}", f"{path}.dtype")
    if not isinstance(shape, list) or len(shape) > MAX_DIMS:
        raise DecodeError(f"shape must be a list of at most {MAX_DIMS} dims", f"{path}.shape")
    n = 1
    for i, s in enumerate(shape):
        if not isinstance(s, int) or isinstance(s, bool) or s < 0:
            raise DecodeError("dims must be non-negative ints", f"{path}.shape[{i}]")
        n *= s
        if n > cap:
            raise DecodeError(f"more than {cap} elements", f"{path}.shape")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError("data must be bytes", f"{path}.data")
    if n * DTYPES[dtype] != len(data):
        raise DecodeError(f"shape {shape} x {DTYPES[dtype]} bytes != {len(data)} bytes of data", f"{path}.data")
    mv = memoryview(data)
    return WireTensor(dtype, tuple(shape), mv.toreadonly() if not mv.readonly else mv)
