"""Byzantine output for the lab's emulated peers (torch side): a lying stage perturbs its result."""

from __future__ import annotations

import random

import torch

from ..wire.tensor import decode_tensor
from .tensors import from_wire, to_wire


def corrupter(rng: random.Random, vocab: int):
    """A callable that perturbs a result in place: noise of the activations' own scale on a hidden state, or,
    on the last hop, another token."""

    def corrupt(res: dict) -> None:
        if res.get("hidden") is not None:
            h = from_wire(decode_tensor(res["hidden"])).clone()
            g = torch.Generator().manual_seed(rng.getrandbits(31))
            h += torch.randn(h.shape, generator=g, dtype=h.dtype) * (h.std() + 1e-3)
            res["hidden"] = to_wire(h)
        elif res.get("tokens"):  # a speculative step: one of its tokens (a draft then fails to match it)
            toks = list(res["tokens"])
            j = rng.randrange(len(toks))
            toks[j] = (toks[j] + 1 + rng.randrange(vocab - 1)) % vocab
            res["tokens"], res["token"] = toks, toks[-1]
        elif res.get("token") is not None:
            res["token"] = (res["token"] + 1 + rng.randrange(vocab - 1)) % vocab
            res["piece"] = ""

    return corrupt
