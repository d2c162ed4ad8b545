"""Layer shards reproduce the monolithic model bit for bit (fp32, same attention, same threads)."""

import pytest

torch = pytest.importorskip("torch")

from gtracd.engine.reference import greedy, load  # noqa: E402
from gtracd.engine.sampling import sample  # noqa: E402
from gtracd.engine.shard import Shard  # noqa: E402
from gtracd.engine.tensors import from_wire, to_wire  # noqa: E402
from gtracd.wire import decode_frame, encode_frame  # noqa: E402

from .models import tiny_gemma3, tiny_gpt2, tiny_llama, tiny_qwen  # noqa: E402

pytestmark = pytest.mark.model
SPLITS = [[(0, 6)], [(0, 3), (3, 6)], [(0, 1), (1, 5), (5, 6)], [(0, 2), (2, 4), (4, 6)]]


BUILD = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qwen2": lambda d: tiny_qwen(d, "qwen2"),
         "qwen3": lambda d: tiny_qwen(d, "qwen3"), "gemma3": tiny_gemma3}


@pytest.fixture(scope="module", params=list(BUILD))
def model_dir(request, tmp_path_factory):
    return BUILD[request.param](tmp_path_factory.mktemp(request.param))


def monolithic(folder, prompt, steps):
    run = greedy(load(folder), prompt, steps)
    return run.logits, run.tokens


def sharded(folder, split, prompt, steps, wire=True):
    shards = [Shard(folder, a, b) for a, b in split]
    caches = [s.new_cache() for s in shards]
    logits, toks = [], []
    inp, pos = prompt, 0
    for _ in range(steps):
        h = None
        for s, c in zip(shards, caches, strict=True):
            o = s.forward(c, pos, input_ids=torch.tensor(inp) if s.first else None, hidden=h)
            h = o.hidden
            if h is not None and wire:  # through the real codec, as on the network
                _, body = decode_frame(encode_frame("result", {"session": b"s" * 16, "cached": 0,
                                                               "hidden": to_wire(h), "compute_ms": 0.0}))
                h = from_wire(body["hidden"])
        logits.append(o.logits)
        toks.append(int(o.logits.argmax()))
        pos += len(inp)
        inp = [toks[-1]]
    return logits, toks


@pytest.mark.parametrize("split", SPLITS, ids=lambda s: "|".join(f"{a}-{b}" for a, b in s))
def test_logits_bit_identical_to_monolithic(model_dir, split):
    prompt = [5, 17, 99, 3, 42, 7, 200, 11]
    ref_logits, ref_toks = monolithic(model_dir, prompt, 12)
    logits, toks = sharded(model_dir, split, prompt, 12)
    assert toks == ref_toks
    for a, b in zip(logits, ref_logits, strict=True):
        assert torch.equal(a, b), (a - b).abs().max()


def test_shard_reads_only_its_tensors(model_dir):
    s = Shard(model_dir, 2, 4)
    assert s.embed is None and s.lm_head is None and len(s.layers) == 2
    n = sum(p.numel() for p in s.layers.parameters())
    assert n > 0 and not any(p.is_meta for p in s.layers.parameters())


def test_bad_layer_range(model_dir):
    from gtracd.errors import UserError

    with pytest.raises(UserError, match="outside"):
        Shard(model_dir, 4, 9)


def test_sampling_deterministic_per_position():
    lg = torch.randn(256)
    a = [sample(lg, p, 0.8, 50, 0.9, seed=3) for p in range(20)]
    assert a == [sample(lg, p, 0.8, 50, 0.9, seed=3) for p in range(20)]
    assert len(set(a)) > 1
    assert sample(lg, 0) == int(lg.argmax())
    assert sample(lg, 5, 1.0, top_k=1, seed=9) == int(lg.argmax())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32])
def test_torch_wire_round_trip_zero_copy(dtype):
    t = (torch.randn(2, 3, 5) * 100).to(dtype)
    w = to_wire(t)
    _, body = decode_frame(encode_frame("result", {"session": b"s" * 16, "cached": 0, "hidden": w, "compute_ms": 0.0}))
    back = from_wire(body["hidden"])
    assert back.dtype == dtype and torch.equal(back, t)
    raw = body["hidden"].data
    assert back.data_ptr() == torch.frombuffer(raw, dtype=torch.uint8).data_ptr()  # a view, not a copy
