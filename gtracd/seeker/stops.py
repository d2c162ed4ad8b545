"""Stop strings over streamed text (pure): pieces go in, the text that is safe to show comes out.

A stop string may span pieces, so the longest tail that could still begin a stop string is held back until
the next piece decides it; the stop string itself and everything after it are never shown.
"""

from __future__ import annotations


class StopMatcher:
    def __init__(self, stops: list[str] | tuple[str, ...] = ()):
        self.stops = [s for s in stops if s]
        self.held = ""
        self.stopped = False
        self.text = ""  # everything shown so far

    def _hold_len(self, buf: str) -> int:
        """The longest suffix of buf that is a proper prefix of some stop string."""
        best = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(buf)), best, -1):
                if buf.endswith(s[:k]):
                    best = k
                    break
        return best

    def feed(self, piece: str) -> str:
        """The text to show for this piece ("" while held back or after a stop)."""
        if self.stopped or not piece:
            return ""
        buf = self.held + piece
        hits = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            self.stopped = True
            self.held = ""
            out = buf[:min(hits)]
        else:
            k = self._hold_len(buf)
            out, self.held = (buf[:-k], buf[-k:]) if k else (buf, "")
        self.text += out
        return out

    def flush(self) -> str:
        """The generation ended without a stop: what was held back is shown."""
        out, self.held = ("" if self.stopped else self.held), ""
        self.text += out
        return out
