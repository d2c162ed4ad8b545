"""Declarative, strict schemas. Every violation raises DecodeError naming the field path."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import DecodeError
from .tensor import decode_tensor  # local: tensor imports schema
from .text import printable


@dataclass(frozen=True)
class F:
    """One field. `typ` in: int float str bin bool list dict map tensor."""

    typ: str
    lo: float | None = None
    hi: float | None = None
    minlen: int = 0
    maxlen: int | None = None
    optional: bool = False
    choices: tuple | None = None
    text: bool = False  # str: printable characters only (wire.text): names shown to people
    item: F | None = None  # list items / dict values
    fields: dict | None = field(default=None, hash=False)  # map (nested schema)
    since: int = 1  # the wire version that added this field (wire.versions: a message carrying it is written in it)


def _fail(path: str, msg: str):
    raise DecodeError(msg, path)


def check_value(spec: F, v, path: str, lenient: bool = False):
    t = spec.typ
    if t == "int":
        if not isinstance(v, int) or isinstance(v, bool):
            _fail(path, f"expected int, got {type(v).__name__}")
    elif t == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            _fail(path, f"expected number, got {type(v).__name__}")
        if not math.isfinite(v):
            _fail(path, "must be finite")
        v = float(v)
    elif t == "str":
        if not isinstance(v, str):
            _fail(path, f"expected str, got {type(v).__name__}")
    elif t == "bin":
        if not isinstance(v, (bytes, bytearray, memoryview)):
            _fail(path, f"expected bytes, got {type(v).__name__}")
    elif t == "bool":
        if not isinstance(v, bool):
            _fail(path, f"expected bool, got {type(v).__name__}")
    elif t == "list":
        if not isinstance(v, list):
            _fail(path, f"expected list, got {type(v).__name__}")
        if spec.maxlen is not None and len(v) > spec.maxlen:
            _fail(path, f"{len(v)} items exceed the cap of {spec.maxlen}")
        if len(v) < spec.minlen:
            _fail(path, f"needs at least {spec.minlen} items")
        return [check_value(spec.item, x, f"{path}[{i}]", lenient) for i, x in enumerate(v)]
    elif t == "dict":  # free keys (str), uniform values
        if not isinstance(v, dict):
            _fail(path, f"expected map, got {type(v).__name__}")
        if spec.maxlen is not None and len(v) > spec.maxlen:
            _fail(path, f"{len(v)} entries exceed the cap of {spec.maxlen}")
        out = {}
        for k, x in v.items():
            if not isinstance(k, str) or len(k) > 128:
                _fail(path, "map keys must be strings of at most 128 chars")
            out[k] = check_value(spec.item, x, f"{path}.{k}", lenient)
        return out
    elif t == "map":
        return check_map(spec.fields, v, path, lenient)
    elif t == "tensor":
        return decode_tensor(v, path=path, max_elements=int(spec.hi) if spec.hi else None)
    else:  # pragma: no cover - programming error
        raise AssertionError(t)
    if t in ("int", "float"):
        if spec.lo is not None and v < spec.lo:
            _fail(path, f"{v} below the minimum {spec.lo}")
        if spec.hi is not None and v > spec.hi:
            _fail(path, f"{v} above the maximum {spec.hi}")
    if t in ("str", "bin"):
        if spec.maxlen is not None and len(v) > spec.maxlen:
            _fail(path, f"length {len(v)} exceeds the cap of {spec.maxlen}")
        if len(v) < spec.minlen:
            _fail(path, f"length {len(v)} below the minimum {spec.minlen}")
    if spec.text and not printable(v):
        _fail(path, "control or format characters are not allowed in text shown to people")
    if spec.choices is not None and v not in spec.choices:
        _fail(path, f"{v!r} is not one of {', '.join(map(str, spec.choices))}")
    return v


def check_map(fields: dict[str, F], obj, path: str = "body", lenient: bool = False, version: int | None = None) -> dict:
    """The checked map. `lenient`: a newer peer's message (wire.versions): fields not in the schema are left
    out instead of refused; every known field is checked as strictly as ever. `version`: the message's wire
    version; a field added after it (`F.since`) is as unknown as any other there."""
    if not isinstance(obj, dict):
        _fail(path, f"expected map, got {type(obj).__name__}")
    for k in obj:
        if k in fields:  # (the common case: nothing more to check about the name)
            continue
        if not isinstance(k, str) or len(k) > 128:
            _fail(path, "field names are strings of at most 128 characters")
        if not lenient:
            _fail(f"{path}.{k}", "unknown field")
    out = {}
    for name, spec in fields.items():
        if name not in obj or obj[name] is None:
            if not spec.optional:
                _fail(f"{path}.{name}", "missing required field")
            continue
        if version is not None and spec.since > version and not lenient:
            _fail(f"{path}.{name}", f"a field of wire version {spec.since} in a version {version} message")
        out[name] = check_value(spec, obj[name], f"{path}.{name}", lenient)
    return out


def written_version(fields: dict[str, F], body: dict) -> int:
    """The lowest wire version that has every field `body` carries (older peers then read all of it)."""
    return max([1] + [fields[k].since for k, x in body.items() if x is not None and k in fields])
