"""Live conversations kept for reuse (DisCEdge's tokenized context, pure bookkeeping).

A served request leaves its Generation open: the workers keep their KV caches for the tokens it fed. The
next request whose conversation extends one kept here takes that Generation over, so only its new suffix is
prefilled (seeker.generation.Generation.turn prefills from the longest common token prefix). A context is
matched by what the client sent (the chat messages, or the prompt text), then the token prefix decides how
much is reused; a context is in one request's hands at a time. Sampling settings are fixed per worker
session, so only a context opened with the same settings matches.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

KEEP = 8  # live contexts per seeker (each holds a KV cache on every hop of its chain)


def extends(prefix: tuple | str, full: tuple | str) -> bool:
    return len(prefix) <= len(full) and full[:len(prefix)] == prefix


@dataclass
class Context:
    gen: object  # seeker.generation.Generation
    sampling: tuple  # the settings its worker sessions were opened with
    said: tuple | str = ()  # the conversation so far: (role, content) pairs (with the reply), or prompt + reply


class Contexts:
    def __init__(self, keep: int = KEEP):
        self.keep = keep
        self._idle: OrderedDict[int, Context] = OrderedDict()  # least recently used first
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._idle)

    def take(self, said: tuple | str, sampling: tuple) -> Context | None:
        """The kept context with the longest conversation that `said` extends (same sampling), now in the
        caller's hands; None (a miss) if none does."""
        best = None
        for k, c in self._idle.items():
            if c.sampling == sampling and type(c.said) is type(said) and len(c.said) > 0 and extends(c.said, said):
                if best is None or len(c.said) > len(self._idle[best].said):
                    best = k
        if best is None:
            self.misses += 1
            return None
        self.hits += 1
        return self._idle.pop(best)

    def give_back(self, c: Context) -> list[Context]:
        """Keep a context after its request ended well; returns those pushed out (the caller closes them)."""
        self._idle[id(c)] = c
        out = []
        while len(self._idle) > self.keep:
            out.append(self._idle.popitem(last=False)[1])
        return out

    def drain(self) -> list[Context]:
        out = list(self._idle.values())
        self._idle.clear()
        return out
