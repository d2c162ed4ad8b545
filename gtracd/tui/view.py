"""What the user chose to see in `gtracd top` (pure): sort column, order, filter, help; key presses move it from
one state to the next. Plus trust trends: the samples each refresh saw, as an arrow and a sparkline."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace

from .network import Peer

SORTS = ("layers", "name", "role", "trust", "latency", "state")
KEYS = (  # (keys, what they do): the `?` help screen, one place
    ("s", "sort by the next column (layers, name, role, trust, latency, state)"),
    ("r", "reverse the order"),
    ("/", "filter peers: type text, Enter keeps it, Esc clears it"),
    ("c", "clear the filter"),
    ("?", "show or hide this help"),
    ("q", "quit (Ctrl-C too)"),
)
QUIT = "quit"


@dataclass(frozen=True)
class ViewState:
    sort: str = "layers"
    reverse: bool = False
    filter: str = ""
    typing: bool = False  # reading filter text
    help: bool = False


def keys_of(data: str) -> list[str]:
    """Key presses in what the terminal sent: an escape sequence (an arrow, a function key: ESC [ ... or
    ESC O x) is one key, so its ESC is not taken for the Esc key."""
    out, i = [], 0
    while i < len(data):
        ch = data[i]
        if ch == "\x1b" and i + 1 < len(data) and data[i + 1] in "[O":
            j = i + 2
            while j < len(data) and not ("@" <= data[j] <= "~"):
                j += 1
            out.append(data[i:j + 1])
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return out


def on_key(st: ViewState, key: str) -> ViewState | str:
    """The next state after a key press (one of keys_of's), or QUIT. Escape sequences are ignored."""
    if len(key) != 1:
        return st
    if st.typing:
        if key in ("\r", "\n"):
            return replace(st, typing=False)
        if key == "\x1b":
            return replace(st, typing=False, filter="")
        if key in ("\x7f", "\b"):
            return replace(st, filter=st.filter[:-1])
        if key.isprintable() and len(st.filter) < 40:
            return replace(st, filter=st.filter + key)
        return st
    if key in ("q", "Q", "\x03"):
        return QUIT
    if key == "?":
        return replace(st, help=not st.help)
    if key == "\x1b":
        return replace(st, help=False)
    if key == "s":
        return replace(st, sort=SORTS[(SORTS.index(st.sort) + 1) % len(SORTS)])
    if key == "r":
        return replace(st, reverse=not st.reverse)
    if key == "/":
        return replace(st, typing=True, filter="")
    if key == "c":
        return replace(st, filter="")
    return st


_STATE_ORDER = {"serving": 0, "up": 0, "loading": 1, "joining": 2, "draining": 3, "stale": 4, "gone": 5, "down": 5}


def _key(sort: str):
    def layers(p: Peer):
        return (p.layers is None, p.layers or (0, 0), p.role, p.label)

    return {
        "layers": layers,
        "name": lambda p: (p.label.lower(), p.peer_id),
        "role": lambda p: (p.role, layers(p)),
        "trust": lambda p: (p.trust is None, -(p.trust or 0.0), p.label),
        "latency": lambda p: (p.latency_ms is None, p.latency_ms or 0.0, p.label),
        "state": lambda p: (_STATE_ORDER.get(p.state, 6), layers(p)),
    }[sort]


def visible(peers, st: ViewState) -> list[Peer]:
    """The peers table's rows: filtered (substring of name, id, role, state or model) and sorted."""
    f = st.filter.lower()
    rows = [p for p in peers if not f or any(f in s.lower() for s in (p.label, p.peer_id, p.role, p.state, p.model))]
    rows.sort(key=_key(st.sort))
    if st.reverse:
        rows.reverse()
    return rows


SPARK = "▁▂▃▄▅▆▇█"


class Trends:
    """Trust samples per peer, one per refresh that saw it (the last `keep`)."""

    def __init__(self, keep: int = 12, max_peers: int = 10_000):
        self.keep, self.max_peers = keep, max_peers
        self.samples: dict[str, deque[float]] = {}

    def add(self, peers) -> None:
        for p in peers:
            if p.trust is None:
                continue
            d = self.samples.get(p.peer_id)
            if d is None:
                if len(self.samples) >= self.max_peers:
                    continue
                d = self.samples[p.peer_id] = deque(maxlen=self.keep)
            d.append(p.trust)

    def arrow(self, pid: str) -> str:
        d = self.samples.get(pid)
        if not d or len(d) < 2 or abs(d[-1] - d[0]) < 1e-4:
            return "→" if d and len(d) >= 2 else " "
        return "↑" if d[-1] > d[0] else "↓"

    def spark(self, pid: str) -> str:
        d = self.samples.get(pid)
        if not d:
            return ""
        lo, hi = min(d), max(d)
        if hi - lo < 1e-4:
            return SPARK[3] * len(d)
        return "".join(SPARK[min(len(SPARK) - 1, int((x - lo) / (hi - lo) * len(SPARK)))] for x in d)
