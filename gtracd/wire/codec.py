"""Canonical msgpack: maps with sorted string keys, bin for bytes, float64 floats, no ext types.

`unpackb` never raises anything but DecodeError, whatever the input bytes.
"""

from __future__ import annotations

import msgpack

from ..errors import DecodeError, Oversize


def _canon(obj):
    if isinstance(obj, dict):
        return {k: _canon(obj[k]) for k in sorted(obj)}
    if isinstance(obj, (list, tuple)):
        return [_canon(x) for x in obj]
    if isinstance(obj, memoryview):
        return obj  # packed as bin without a copy
    return obj


def packb(obj) -> bytes:
    """Canonical encoding (what signatures cover)."""
    try:
        return msgpack.packb(_canon(obj), use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as e:
        raise DecodeError(f"cannot encode: {e}") from None


def _no_ext(code, data):
    raise DecodeError(f"msgpack ext type {code} is not allowed")


def unpackb(data: bytes | memoryview, max_bytes: int) -> object:
    if len(data) > max_bytes:
        raise Oversize("message", len(data), max_bytes)
    try:
        return msgpack.unpackb(
            data, raw=False, use_list=True, strict_map_key=True, ext_hook=_no_ext,
            max_bin_len=max_bytes, max_str_len=max_bytes,
            max_array_len=max_bytes, max_map_len=max_bytes, max_ext_len=max_bytes,
        )
    except DecodeError:
        raise
    except Exception as e:  # msgpack raises a zoo: ValueError, ExtraData, FormatError, StackError, ...
        raise DecodeError(f"malformed msgpack ({type(e).__name__}: {e})") from None
