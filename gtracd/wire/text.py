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
