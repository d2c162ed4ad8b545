"""Spot-check comparison, arbitration and evidence (seeker/spotcheck.py, pure)."""

from __future__ import annotations


def _h(values, dtype="float32"):
    import struct

    from gtracd.wire.tensor import WireTensor

    data = struct.pack(("<%df" if dtype == "float32" else "<%de") % len(values), *values)
    return {"hidden": WireTensor(dtype, (1, 1, len(values)), memoryview(data))}


def test_spot_check_comparison_and_arbitration():
    from gtracd.seeker.spotcheck import RTOL, arbitrate, evidence, input_digest, output_digest, same_output

    base = [1.0, -2.0, 4.0, 0.5]
    assert same_output(_h(base), _h(base))  # bit-identical
    assert same_output(_h(base), _h([1.0 + 4.0 * RTOL * 0.5, -2.0, 4.0, 0.5]))  # honest rounding
    assert not same_output(_h(base), _h([1.0 + 4.0 * RTOL * 2, -2.0, 4.0, 0.5]))  # beyond the tolerance
    assert not same_output(_h(base), _h([float("nan"), -2.0, 4.0, 0.5]))
    assert not same_output(_h(base), _h(base, "float16"))  # another dtype is another computation
    assert same_output({"token": 5}, {"token": 5}) and not same_output({"token": 5}, {"token": 6})
    lie = _h([9.0, 9.0, 9.0, 9.0])
    assert arbitrate(lie, _h(base), _h(base)).liar == "hop"
    assert arbitrate(_h(base), lie, _h(base)).liar == "witness"
    assert arbitrate(_h(base), lie, _h([0.0] * 4)).liar is None  # agrees with neither: nobody accused
    assert arbitrate(_h(base), lie, None).liar is None
    from gtracd.seeker.generation import Chunk

    ev = evidence(input_digest(Chunk(0, 2, tokens=[1, 2])), lie, _h(base), _h(base))
    assert len(ev["input"]) == 32 and ev["outputs"][0] != ev["outputs"][1] == ev["outputs"][2]
    assert output_digest({"token": 5}) != output_digest({"token": 6})
