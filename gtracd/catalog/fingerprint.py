"""Model fingerprints, torch-free: seekers pin the model they serve by it without the model stack.

A fingerprint is sha256 over the config (volatile keys dropped), every tensor's name/dtype/shape (read from
the safetensors headers) and the weight bytes, cut to 32 hex digits. It is cached next to the weights, keyed
by file sizes and mtimes. Workers chain only with identical fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import re
import struct
from pathlib import Path

from ..errors import UserError
from .names import TINY_RE, model_cache_dir

HEX32 = re.compile(r"^[0-9a-f]{32}$")
# fingerprints (and depths) of the built-in models, measured reproducible across fresh builds
# (docs/decisions.md): a seeker pins one without converting the model itself
SHIPPED = {"smollm2-135m": ("798e75b0376db5a12f29a0136e7d3127", 30)}
HEADER_MAX = 100 << 20


def _header(path: Path) -> dict:
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise UserError(f"{path}: not a safetensors file")
        (n,) = struct.unpack("<Q", raw)
        if n > HEADER_MAX:
            raise UserError(f"{path}: safetensors header of {n} bytes is implausible")
        try:
            doc = json.loads(fh.read(n))
        except ValueError:
            raise UserError(f"{path}: unreadable safetensors header") from None
    doc.pop("__metadata__", None)
    return doc


def fingerprint(folder: Path | str) -> str:
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    stamp = [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in files]
    cache = folder / ".gtracd-fingerprint.json"
    try:
        doc = json.loads(cache.read_text())
        if doc.get("stamp") == stamp:
            return doc["fingerprint"]
    except (OSError, ValueError, KeyError):
        pass
    h = hashlib.sha256()
    cfg = json.loads((folder / "config.json").read_text())
    for volatile in ("transformers_version", "_name_or_path", "torch_dtype", "dtype"):
        cfg.pop(volatile, None)
    h.update(json.dumps(cfg, sort_keys=True).encode())
    for f in files:
        hdr = _header(f)
        for k in sorted(hdr):
            h.update(f"{k}:{hdr[k]['dtype']}:{hdr[k]['shape']}".encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    fp = h.hexdigest()[:32]
    try:
        cache.write_text(json.dumps({"stamp": stamp, "fingerprint": fp}))
    except OSError:
        pass
    return fp


def depth(folder: Path) -> int | None:
    """The number of transformer layers in a model folder's config (Llama-style or GPT-2 keys)."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    return n if isinstance(n, int) and n > 0 else None


def pinned_model(spec: str) -> tuple[str, int | None]:
    """The model a seeker serves for `--model SPEC`, without torch: (fingerprint, depth). A fingerprint as
    given (depth then unknown: the depth most of its workers announce is used); a built-in name (shipped
    values, or the local cache); a local folder (hashed); else a clear error."""
    spec = spec.strip()
    if HEX32.match(spec):
        return spec, None
    cached = model_cache_dir() / spec
    if (spec in SHIPPED or TINY_RE.match(spec)) and (cached / "config.json").exists():
        return fingerprint(cached), depth(cached)
    if spec in SHIPPED:
        return SHIPPED[spec]
    if TINY_RE.match(spec):
        raise UserError(f"model {spec} is not built on this machine: run `gtracd model prepare {spec}` (needs the "
                        f"worker extra) or give its fingerprint with --model")
    p = Path(spec).expanduser()
    if (p / "config.json").exists():
        return fingerprint(p), depth(p)
    raise UserError(f"cannot pin model {spec!r}: give a built-in name (smollm2-135m), a local model folder, or "
                    f"the 32-hex fingerprint a worker announces (`gtracd model prepare` prints it)")
