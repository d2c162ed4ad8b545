"""Model fingerprints, torch-free: seekers pin the model they serve by it without the model stack.

A fingerprint pins the weights and the model card together: sha256 over the weights digest and the card
digest, cut to 32 hex digits. The weights digest is sha256 over the config (volatile keys dropped), every
tensor's name/dtype/shape (read from the safetensors headers) and the weight bytes; it is cached next to the
weights, keyed by file sizes and mtimes. The card is the files a seeker reads text with (tokenizer.json, the
chat template, special and end-of-turn tokens: CARD_FILES); a worker hands it over with its weights digest,
and `card_fingerprint` lets a seeker check both against the fingerprint it pinned, without the weights.
Workers chain only with identical fingerprints.

A worker serving quantized weights (`--quantize int8`, engine.quant) serves other numbers: its weights digest
is the folder's digest bound to the scheme (`scheme_weights`), so the fingerprint differs, a seeker pins model
and scheme together, and workers of different schemes never share a chain or witness each other.
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
# per scheme (as prepared, and served with --quantize int8)
SHIPPED = {
    "smollm2-135m": ({"float32": "d15430767150c38c2889cff573c4a68d", "int8": "c2491b88f21a22c17f239d074877d0e6"}, 30),
    "gemma3-270m": ({"float32": "2953f0a9094c67214d7f1dbf50561300", "int8": "26fc2cc982636e8d405712b0800b4a9f"}, 18),
}
SCHEMES = ("float32", "int8")  # what a worker may serve a model's weights as (engine.quant)
HEADER_MAX = 100 << 20
# the files of the model card, in the order they are hashed; each at most CARD_FILE_MAX bytes
CARD_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
              "chat_template.json", "generation_config.json", "config.json")
CARD_FILE_MAX = 64 << 20
CARD_MAX = 80 << 20
CACHE_VERSION = 2


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


def card_files(folder: Path | str) -> dict[str, bytes]:
    """The model card's files present in a model folder (name -> bytes)."""
    out = {}
    for name in CARD_FILES:
        p = Path(folder) / name
        if p.is_file():
            if p.stat().st_size > CARD_FILE_MAX:
                raise UserError(f"{p}: {p.stat().st_size} bytes exceed the card file cap of {CARD_FILE_MAX}")
            out[name] = p.read_bytes()
    return out


def card_digest(files: dict[str, bytes]) -> bytes:
    h = hashlib.sha256()
    for name in CARD_FILES:
        if name in files:
            data = files[name]
            h.update(name.encode() + b"\0" + len(data).to_bytes(8, "big") + data)
    return h.digest()


def card_fingerprint(weights: str, files: dict[str, bytes]) -> str:
    """The fingerprint of weights (their digest, 64 hex) served with this card."""
    if set(files) - set(CARD_FILES):
        raise ValueError(f"not card files: {sorted(set(files) - set(CARD_FILES))}")
    h = hashlib.sha256(b"gtracd-model/2\0" + bytes.fromhex(weights) + card_digest(files))
    return h.hexdigest()[:32]


def weights_digest(folder: Path | str) -> str:
    """sha256 (64 hex) over the config and the weights, cached next to them."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    stamp = [[f.name, f.stat().st_size, int(f.stat().st_mtime)] for f in [*files, folder / "config.json"]]
    cache = folder / ".gtracd-fingerprint.json"
    try:
        doc = json.loads(cache.read_text())
        if doc.get("version") == CACHE_VERSION and doc.get("stamp") == stamp and re.match(r"^[0-9a-f]{64}$",
                                                                                          doc["weights"]):
            return doc["weights"]
    except (OSError, ValueError, KeyError, TypeError):
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
    digest = h.hexdigest()
    try:
        cache.write_text(json.dumps({"version": CACHE_VERSION, "stamp": stamp, "weights": digest}))
    except OSError:
        pass
    return digest


def scheme_of(setting: str) -> str:
    """The scheme a `quantize` setting names: none (or float32: the weights as prepared) or int8."""
    v = (setting or "none").strip().lower()
    v = "float32" if v == "none" else v
    if v not in SCHEMES:
        raise UserError(f"quantize {setting!r}: choose none or {', '.join(SCHEMES[1:])}")
    return v


def scheme_weights(digest: str, scheme: str) -> str:
    """The weights digest of a folder's weights served as `scheme` (float32: the folder's own)."""
    if scheme == "float32":
        return digest
    return hashlib.sha256(b"gtracd-quant\0" + scheme.encode() + b"\0" + bytes.fromhex(digest)).hexdigest()


def fingerprint(folder: Path | str, scheme: str = "float32") -> str:
    return card_fingerprint(scheme_weights(weights_digest(folder), scheme), card_files(folder))


def depth(folder: Path) -> int | None:
    """The number of transformer layers in a model folder's config (Llama-style or GPT-2 keys)."""
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    n = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    return n if isinstance(n, int) and n > 0 else None


def pinned_model(spec: str, scheme: str = "float32") -> tuple[str, int | None]:
    """The model a seeker serves for `--model SPEC` with weights served as `scheme`, without torch:
    (fingerprint, depth). A fingerprint as given (depth then unknown: the depth most of its workers announce
    is used; it names its scheme already); a built-in name (shipped values, or the local cache); a local
    folder (hashed); else a clear error."""
    spec = spec.strip()
    if HEX32.match(spec):
        return spec, None
    cached = model_cache_dir() / spec
    if (spec in SHIPPED or TINY_RE.match(spec)) and (cached / "config.json").exists():
        return fingerprint(cached, scheme), depth(cached)
    if spec in SHIPPED:
        fps, layers = SHIPPED[spec]
        return fps[scheme], layers
    if TINY_RE.match(spec):
        raise UserError(f"model {spec} is not built on this machine: run `gtracd model prepare {spec}` (needs the "
                        f"worker extra) or give its fingerprint with --model")
    p = Path(spec).expanduser()
    if (p / "config.json").exists():
        return fingerprint(p, scheme), depth(p)
    raise UserError(f"cannot pin model {spec!r}: give a built-in name (smollm2-135m), a local model folder, or "
                    f"the 32-hex fingerprint a worker announces (`gtracd model prepare` prints it)")
