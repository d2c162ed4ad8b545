"""The stages of tokenizer.json around the model, read from their JSON specs (the `tokenizers` library's
semantics): normalizers (text -> text), pre-tokenizers (text -> pieces), decoders (tokens -> text) and
post-processors (ids -> ids with special tokens). A stage this module does not know is a clear error: the
seeker never guesses at text."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable

from ..errors import UserError
from .regex import WHITE_SPACE, translate

SPM = "\u2581"  # SentencePiece's visible space


class Unsupported(UserError):
    """A tokenizer.json stage the pure-Python tokenizer does not implement."""


def _unsupported(kind: str, spec: dict | None) -> Unsupported:
    return Unsupported(f"tokenizer.json {kind} {spec.get('type') if isinstance(spec, dict) else spec!r} is not "
                       f"supported by gtracd's tokenizer (supported: BPE models with byte-level or "
                       f"SentencePiece-style stages)")


@functools.lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs, strict=True)}


@functools.lru_cache(maxsize=1)
def unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


GPT2_SPLIT = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"


def _pattern(spec) -> re.Pattern:
    if not isinstance(spec, dict):
        raise Unsupported(f"tokenizer.json pattern {spec!r} is not a String or Regex")
    if "String" in spec:
        return re.compile(re.escape(spec["String"]))
    if "Regex" in spec:
        return translate(spec["Regex"])
    raise Unsupported(f"tokenizer.json pattern {spec!r} is not a String or Regex")


# ---------------------------------------------------------------------------------------------- normalizers
def normalizer(spec: dict | None) -> Callable[[str], str]:
    if spec is None:
        return lambda s: s
    t = spec.get("type")
    if t == "Sequence":
        parts = [normalizer(s) for s in spec["normalizers"]]

        def seq(s: str) -> str:
            for p in parts:
                s = p(s)
            return s
        return seq
    if t in ("NFC", "NFD", "NFKC", "NFKD"):
        return lambda s: unicodedata.normalize(t, s)
    if t == "Lowercase":
        return str.lower
    if t == "Replace":
        pat, content = _pattern(spec["pattern"]), spec["content"]
        return lambda s: pat.sub(lambda _m: content, s)
    if t == "Prepend":
        pre = spec["prepend"]
        return lambda s: pre + s if s else s
    if t == "Strip":
        left, right = spec.get("strip_left", True), spec.get("strip_right", True)
        ws = f"[{WHITE_SPACE}]"
        return lambda s: re.sub(f"{ws}+$" if right else "(?!)", "", re.sub(f"^{ws}+" if left else "(?!)", "", s))
    raise _unsupported("normalizer", spec)


# ---------------------------------------------------------------------------------------------- pre-tokenizers
def _split(text: str, pat: re.Pattern, behavior: str, invert: bool = False) -> list[str]:
    """tokenizers' Split with a SplitDelimiterBehavior, on one piece."""
    spans, last = [], 0  # (is_match, text)
    for m in pat.finditer(text):
        if m.start() == m.end():
            continue
        if m.start() > last:
            spans.append((False, text[last:m.start()]))
        spans.append((True, text[m.start():m.end()]))
        last = m.end()
    if last < len(text):
        spans.append((False, text[last:]))
    if invert:
        spans = [(not k, s) for k, s in spans]
    if behavior == "Removed":
        return [s for k, s in spans if not k]
    if behavior == "Isolated":
        return [s for _k, s in spans]
    out: list[str] = []
    if behavior == "MergedWithPrevious":
        for k, s in spans:
            if k and out:
                out[-1] += s
            else:
                out.append(s)
        return out
    if behavior == "MergedWithNext":
        pending = ""
        for k, s in spans:
            if k:
                if pending:
                    out.append(pending)
                pending = s
            else:
                out.append(pending + s)
                pending = ""
        if pending:
            out.append(pending)
        return out
    if behavior == "Contiguous":
        runs: list[tuple[bool, str]] = []
        for k, s in spans:
            if runs and k and runs[-1][0]:
                runs[-1] = (True, runs[-1][1] + s)
            else:
                runs.append((k, s))
        return [s for _k, s in runs]
    raise Unsupported(f"tokenizer.json split behavior {behavior!r} is not supported")


def pre_tokenizer(spec: dict | None) -> Callable[[list[str], bool], list[str]]:
    """pieces, first (the text's first section) -> pieces."""
    if spec is None:
        return lambda pieces, first: pieces
    t = spec.get("type")
    if t == "Sequence":
        parts = [pre_tokenizer(s) for s in spec["pretokenizers"]]

        def seq(pieces: list[str], first: bool) -> list[str]:
            for p in parts:
                pieces = p(pieces, first)
            return pieces
        return seq
    if t == "ByteLevel":
        prefix, use_regex = spec.get("add_prefix_space", False), spec.get("use_regex", True)
        pat = translate(GPT2_SPLIT)
        b2u = bytes_to_unicode()

        def byte_level(pieces: list[str], first: bool) -> list[str]:
            out = []
            for i, p in enumerate(pieces):
                if prefix and i == 0 and not p.startswith(" "):
                    p = " " + p
                for s in (_split(p, pat, "Isolated") if use_regex else [p]):
                    out.append("".join(b2u[b] for b in s.encode("utf-8")))
            return out
        return byte_level
    if t == "Split":
        pat = _pattern(spec["pattern"])
        behavior, invert = spec.get("behavior", "Isolated"), spec.get("invert", False)
        return lambda pieces, first: [s for p in pieces for s in _split(p, pat, behavior, invert)]
    if t == "Digits":
        pat = re.compile(r"\d" if spec.get("individual_digits") else r"\d+")
        return lambda pieces, first: [s for p in pieces for s in _split(p, pat, "Isolated")]
    if t == "Metaspace":
        rep = spec.get("replacement", SPM)
        scheme = spec.get("prepend_scheme", "always" if spec.get("add_prefix_space", True) else "never")
        split = spec.get("split", True)
        pat = re.compile(re.escape(rep))

        def metaspace(pieces: list[str], first: bool) -> list[str]:
            out = []
            for i, p in enumerate(pieces):
                p = p.replace(" ", rep)
                if (scheme == "always" or (scheme == "first" and first and i == 0)) and not p.startswith(rep):
                    p = rep + p
                out.extend(_split(p, pat, "MergedWithNext") if split else [p])
            return out
        return metaspace
    if t == "WhitespaceSplit":
        pat = re.compile(f"[^{WHITE_SPACE}]+")
        return lambda pieces, first: [s for p in pieces for s in pat.findall(p)]
    if t == "Whitespace":
        pat = re.compile(r"\w+|[^\w\s]+")
        return lambda pieces, first: [s for p in pieces for s in pat.findall(p)]
    raise _unsupported("pre_tokenizer", spec)


# ---------------------------------------------------------------------------------------------- decoders
_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def decoder(spec: dict | None) -> Callable[[list[str]], list[str]]:
    """tokens -> strings (joined by the caller), the `decode_chain` of tokenizers."""
    if spec is None:
        return lambda toks: [" ".join(toks)] if toks else []  # tokenizers' default: tokens joined by spaces
    t = spec.get("type")
    if t == "Sequence":
        parts = [decoder(s) for s in spec["decoders"]]

        def seq(toks: list[str]) -> list[str]:
            for p in parts:
                toks = p(toks)
            return toks
        return seq
    if t == "ByteLevel":
        u2b = unicode_to_bytes()

        def byte_level(toks: list[str]) -> list[str]:
            raw = bytearray()
            for tok in toks:
                bs = [u2b.get(c) for c in tok]
                raw.extend(tok.encode("utf-8") if None in bs else bytes(bs))
            return [raw.decode("utf-8", errors="replace")]
        return byte_level
    if t == "Fuse":
        return lambda toks: ["".join(toks)]
    if t == "Replace":
        pat, content = _pattern(spec["pattern"]), spec["content"]
        return lambda toks: [pat.sub(lambda _m: content, s) for s in toks]
    if t == "Strip":
        content, start, stop = spec.get("content", " "), spec.get("start", 0), spec.get("stop", 0)

        def strip(toks: list[str]) -> list[str]:
            out = []
            for s in toks:
                a, b = 0, len(s)
                while a < start and a < b and s[a] == content:
                    a += 1
                k = 0
                while k < stop and b > a and s[b - 1] == content:
                    b -= 1
                    k += 1
                out.append(s[a:b])
            return out
        return strip
    if t == "ByteFallback":
        def byte_fallback(toks: list[str]) -> list[str]:
            out: list[str] = []
            pending = bytearray()
            n_pending = 0

            def flush() -> None:
                nonlocal n_pending
                if n_pending:
                    try:
                        out.append(bytes(pending).decode("utf-8"))
                    except UnicodeDecodeError:
                        out.extend("\ufffd" for _ in range(n_pending))
                    pending.clear()
                    n_pending = 0
            for s in toks:
                m = _BYTE_TOKEN.match(s)
                if m:
                    pending.append(int(m.group(1), 16))
                    n_pending += 1
                else:
                    flush()
                    out.append(s)
            flush()
            return out
        return byte_fallback
    if t == "Metaspace":
        rep = spec.get("replacement", SPM)
        scheme = spec.get("prepend_scheme", "always" if spec.get("add_prefix_space", True) else "never")

        def metaspace(toks: list[str]) -> list[str]:
            out = []
            for i, s in enumerate(toks):
                s = s.replace(rep, " ")
                if i == 0 and scheme != "never" and s.startswith(" "):
                    s = s[1:]
                out.append(s)
            return out
        return metaspace
    raise _unsupported("decoder", spec)


# ---------------------------------------------------------------------------------------------- post-processors
def post_processor(spec: dict | None) -> Callable[[list[int]], list[int]]:
    """ids of one sequence -> ids with the special tokens `add_special_tokens` asks for."""
    if spec is None:
        return lambda ids: ids
    t = spec.get("type")
    if t == "Sequence":
        parts = [post_processor(s) for s in spec["processors"]]

        def seq(ids: list[int]) -> list[int]:
            for p in parts:
                ids = p(ids)
            return ids
        return seq
    if t == "ByteLevel":
        return lambda ids: ids
    if t == "TemplateProcessing":
        specials = {k: list(v["ids"]) for k, v in (spec.get("special_tokens") or {}).items()}
        plan: list[list[int] | None] = []  # None: the sequence itself
        for item in spec.get("single", []):
            if "Sequence" in item:
                plan.append(None)
            elif "SpecialToken" in item:
                name = item["SpecialToken"]["id"]
                if name not in specials:
                    raise Unsupported(f"tokenizer.json template names special token {name!r} it does not define")
                plan.append(specials[name])
            else:
                raise Unsupported(f"tokenizer.json template item {item!r} is not supported")

        def template(ids: list[int]) -> list[int]:
            out: list[int] = []
            for p in plan:
                out.extend(ids if p is None else p)
            return out
        return template
    if t in ("RobertaProcessing", "BertProcessing"):
        cls, sep = spec["cls"][1], spec["sep"][1]
        return lambda ids: [cls, *ids, sep]
    raise _unsupported("post_processor", spec)
