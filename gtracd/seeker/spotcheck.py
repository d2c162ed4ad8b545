"""Byzantine spot checks (pure parts): digests, the output comparison, and the arbitration verdict.

A seeker re-executes a sampled share of hops on an independent replica of the same layer range (the
*witness*): for the first `spot_check_calls` calls of a checked hop the witness gets exactly the inputs the
hop got, and the outputs are compared. A mismatch is arbitrated by a third replica (the *arbiter*, replayed
the same inputs): the party the arbiter disagrees with while agreeing with the other is the liar and gets a
`wrong_output` report carrying sha256 digests of the input and of the three outputs. Anything else (the
arbiter agrees with neither, or no arbiter is known) is inconclusive and accuses nobody.

Comparison (docs/decisions.md, measured): tokens must be equal; hidden states match when their bytes are
identical (same kernels, same chunk shapes: the common case) or, for float dtypes, when every element is
within `RTOL` of the largest magnitude in the reference — honest replicas on different thread counts or
CPUs differ by float rounding far below it, and a lie worth telling (noise of the activations' own scale)
is far above it. A chain whose hidden states travel as float16 or bfloat16 (`--wire-dtype`) also allows one
rounding step of each value's own magnitude: an honest difference far below RTOL can still round a value
to the neighbouring half-precision number.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

RTOL = 1e-3  # max |a - b| <= RTOL * max |b|: see docs/decisions.md for the measured honest and lying gaps
HALF_BITS = {"float16": 10, "bfloat16": 7}  # explicit mantissa bits of the half-precision wire dtypes


def input_digest(chunk) -> bytes:
    """sha256 over what a hop was fed: position, then token ids or the hidden tensor (dtype, shape, bytes)."""
    h = hashlib.sha256(b"gtracd-hop-input\0" + struct.pack(">QQ", chunk.pos, chunk.n))
    if chunk.tokens is not None:
        h.update(b"tokens\0" + b"".join(struct.pack(">Q", t) for t in chunk.tokens))
    else:
        t = chunk.hidden
        h.update(f"hidden\0{t['dtype']}\0{list(t['shape'])}\0".encode())
        h.update(bytes(t["data"]))
    return h.digest()


def output_digest(res: dict) -> bytes:
    """sha256 over a hop's output: the hidden tensor, or the sampled token(s) on the last hop."""
    h = hashlib.sha256(b"gtracd-hop-output\0")
    t = res.get("hidden")
    if t is not None:
        h.update(f"hidden\0{t.dtype}\0{list(t.shape)}\0".encode())
        h.update(bytes(t.data))
    else:
        h.update(b"token\0" + struct.pack(">q", int(res.get("token", -1))))
        if res.get("tokens") is not None:  # a speculative step: the token after every position
            h.update(b"tokens\0" + b"".join(struct.pack(">q", int(t)) for t in res["tokens"]))
    return h.digest()


def _floats(t) -> list[float] | None:
    mv = memoryview(bytes(t.data))
    if t.dtype == "float32":
        return list(mv.cast("f"))
    if t.dtype == "float16":  # (memoryview cannot cast to half floats; struct can)
        return list(struct.unpack(f"<{len(mv) // 2}e", mv))
    if t.dtype == "bfloat16":  # the top 16 bits of a float32
        return list(memoryview(b"".join(struct.pack("<I", x << 16) for x in mv.cast("H"))).cast("f"))
    return None


def same_output(a: dict, b: dict, rtol: float = RTOL) -> bool:
    """Do two replicas' outputs for the same input agree (see the module docstring)?"""
    ta, tb = a.get("hidden"), b.get("hidden")
    if ta is None or tb is None:
        if ta is not None or tb is not None or a.get("token") != b.get("token"):
            return False
        # a speculative step: the token after every position, when both replicas answered it (a release before
        # wire version 2 answers only the last one, which is compared above)
        return a.get("tokens") is None or b.get("tokens") is None or a["tokens"] == b["tokens"]
    if ta.dtype != tb.dtype or tuple(ta.shape) != tuple(tb.shape):
        return False
    if bytes(ta.data) == bytes(tb.data):
        return True
    fa, fb = _floats(ta), _floats(tb)
    if fa is None:
        return False
    scale = max((abs(x) for x in fb), default=0.0)
    if scale != scale or scale == float("inf"):  # NaN / inf: never an honest activation
        return False
    bound = rtol * max(scale, 1e-6)
    bits = HALF_BITS.get(ta.dtype)
    if bits is None:
        return all(abs(x - y) <= bound for x, y in zip(fa, fb, strict=True))
    # a half-precision wire dtype: an honest float rounding difference may land on either side of a rounding
    # step, so each value may also differ by one step (ulp) of its own magnitude
    return all(abs(x - y) <= bound + ulp(y, bits) for x, y in zip(fa, fb, strict=True))


def ulp(x: float, bits: int) -> float:
    """The distance between adjacent values near x in a float with `bits` explicit mantissa bits."""
    if x == 0.0:
        return 0.0
    _, e = math.frexp(abs(x))
    return math.ldexp(1.0, e - 1 - bits)


@dataclass(frozen=True)
class Arbitration:
    liar: str | None  # "hop" | "witness" | None (inconclusive)


def arbitrate(hop: dict, witness: dict, arbiter: dict | None) -> Arbitration:
    """The hop's and the witness's outputs differ: who lied, by the arbiter's output?"""
    if arbiter is None:
        return Arbitration(None)
    with_hop, with_witness = same_output(arbiter, hop), same_output(arbiter, witness)
    if with_witness and not with_hop:
        return Arbitration("hop")
    if with_hop and not with_witness:
        return Arbitration("witness")
    return Arbitration(None)


def evidence(inp: bytes, accused: dict, witness: dict, arbiter: dict) -> dict:
    """The `evidence` of a wrong_output report: digests of the input and of each party's output."""
    return {"input": inp, "outputs": [output_digest(accused), output_digest(witness), output_digest(arbiter)]}
