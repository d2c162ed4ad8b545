"""Tokenizer regexes are written for Rust's `regex` crate (Unicode classes like \\p{L}); Python's `re` has no
\\p{..}. translate() rewrites them into an equivalent `re` pattern: each class becomes the explicit code point
ranges of its general category (from unicodedata), and \\s becomes Unicode White_Space exactly (Python's \\s
also matches U+001C..U+001F, which Rust's does not)."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata

from ..errors import UserError

# Unicode White_Space (Rust's \s), as a class body
WHITE_SPACE = "\\t\\n\\x0b\\x0c\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
_NAMES = {"Letter": "L", "Number": "N", "Punctuation": "P", "Symbol": "S", "Mark": "M", "Separator": "Z",
          "Other": "C", "Lu": "Lu", "Ll": "Ll", "Lt": "Lt", "Lm": "Lm", "Lo": "Lo", "Nd": "Nd", "Nl": "Nl",
          "No": "No"}


def _esc(c: int) -> str:
    return f"\\U{c:08x}"


@functools.lru_cache(maxsize=32)
def category_body(cat: str) -> str:
    """The code points whose general category starts with `cat` (L, N, Lu, ...), as a class body of ranges."""
    if cat not in _NAMES.values():
        raise UserError(f"tokenizer regex: unsupported Unicode class \\p{{{cat}}}")
    out, start = [], None
    for c in range(sys.maxunicode + 1):
        if unicodedata.category(chr(c)).startswith(cat):
            if start is None:
                start = c
        elif start is not None:
            out.append((start, c - 1))
            start = None
    if start is not None:
        out.append((start, sys.maxunicode))
    return "".join(_esc(a) if a == b else f"{_esc(a)}-{_esc(b)}" for a, b in out)


def _class_name(pattern: str, i: int) -> tuple[str, int]:
    """At pattern[i] == 'p' or 'P' after a backslash: the category and the index after it."""
    if i + 1 < len(pattern) and pattern[i + 1] == "{":
        j = pattern.find("}", i)
        if j < 0:
            raise UserError("tokenizer regex: unterminated \\p{")
        name = pattern[i + 2:j]
        return _NAMES.get(name, name), j + 1
    return pattern[i + 1], i + 2


@functools.lru_cache(maxsize=64)
def translate(pattern: str) -> re.Pattern:
    out: list[str] = []
    i, in_class = 0, False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in "pP":
                cat, i = _class_name(pattern, i + 1)
                body = category_body(cat)
                if nxt == "P":
                    if in_class:
                        raise UserError("tokenizer regex: \\P{..} inside a class is not supported")
                    out.append(f"[^{body}]")
                else:
                    out.append(body if in_class else f"[{body}]")
                continue
            if nxt == "s":
                out.append(WHITE_SPACE if in_class else f"[{WHITE_SPACE}]")
                i += 2
                continue
            if nxt == "S" and not in_class:
                out.append(f"[^{WHITE_SPACE}]")
                i += 2
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if ch == "[" and not in_class:
            in_class = True
            out.append(ch)
            if pattern[i + 1:i + 2] == "^":
                out.append("^")
                i += 1
            if pattern[i + 1:i + 2] == "]":  # a literal ] first in a class
                out.append("\\]")
                i += 1
        elif ch == "]" and in_class:
            in_class = False
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    try:
        return re.compile("".join(out))
    except re.error as e:
        raise UserError(f"tokenizer regex {pattern!r} is not supported: {e}") from None
