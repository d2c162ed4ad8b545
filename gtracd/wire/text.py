"""Text from the network is shown to people: names, models, states, error messages. It must never reach a
terminal as control: ESC sequences (clear the screen, set the window title), newlines (fake table rows),
bidi overrides (reorder what is shown). One predicate for the wire schema (fields that are names refuse such
characters outright) and one function for every view (anything else is shown with them replaced)."""

from __future__ import annotations

import unicodedata

# control, format (incl. bidi overrides, zero-width), line/paragraph separators, surrogates, private use,
# unassigned
_UNSAFE = frozenset(("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"))
REPLACEMENT = "\ufffd"


def _unsafe(ch: str) -> bool:
    return unicodedata.category(ch) in _UNSAFE


def printable(s: str) -> bool:
    """Only characters that display as themselves (spaces included)."""
    return not any(_unsafe(ch) for ch in s)


def shown(s) -> str:
    """`s` as text a terminal shows literally: every unsafe character becomes U+FFFD."""
    s = str(s)
    return s if printable(s) else "".join(REPLACEMENT if _unsafe(ch) else ch for ch in s)


# in generated text: line breaks and tabs are the text's own; joiners and variation selectors make emoji
_TEXT_KEEP = frozenset("\n\t\u200c\u200d\ufe0e\ufe0f")
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def shown_text(s: str) -> str:
    """Generated text as a terminal shows it literally: line breaks, tabs and emoji joiners stay; every other
    control or format character (ESC sequences, bidi overrides, C1 controls) becomes U+FFFD."""
    if printable(s):
        return s
    return "".join(ch if ch in _TEXT_KEEP or (not _unsafe(ch) and ch not in _BIDI) else REPLACEMENT for ch in s)
