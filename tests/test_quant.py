"""Quantized workers (issue 26): int8 weight-only shards per family, what they cost in memory (the footprint
placement uses, checked against the loaded tensors), and the scheme as part of the model a seeker pins."""

from __future__ import annotations

import pytest

from gtracd.catalog.fingerprint import pinned_model, scheme_of
from gtracd.errors import UserError

torch = pytest.importorskip("torch")

from gtracd.engine.footprint import footprint  # noqa: E402
from gtracd.engine.quant import Int8Linear, tensor_bytes  # noqa: E402
from gtracd.engine.server import ShardServer  # noqa: E402
from gtracd.engine.shard import Shard  # noqa: E402
from gtracd.protocols.sessions import Refused  # noqa: E402

from .models import tiny_gemma3, tiny_gpt2, tiny_llama, tiny_qwen  # noqa: E402

pytestmark = pytest.mark.model
BUILD = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qwen2": lambda d: tiny_qwen(d, "qwen2"),
         "qwen3": lambda d: tiny_qwen(d, "qwen3"), "gemma3": tiny_gemma3}
PROMPT = [5, 17, 99, 3, 42, 7, 200, 11, 8, 9, 10, 12]


@pytest.fixture(scope="module", params=list(BUILD))
def folder(request, tmp_path_factory):
    return BUILD[request.param](tmp_path_factory.mktemp(request.param))


def _run(shards, steps=8):
    caches = [s.new_cache() for s in shards]
    inp, pos, toks, logits = PROMPT, 0, [], []
    for _ in range(steps):
        h = None
        for s, c in zip(shards, caches, strict=True):
            o = s.forward(c, pos, input_ids=torch.tensor(inp) if s.first else None, hidden=h)
            h = o.hidden
        logits.append(o.logits)
        toks.append(int(o.logits.argmax()))
        pos += len(inp)
        inp = [toks[-1]]
    return toks, logits


def test_int8_shards_per_family_quantize_every_linear_and_cost_what_the_footprint_says(folder):
    f32, q = Shard(folder, 0, 6), Shard(folder, 0, 6, scheme="int8")
    linears = [m for m in q.layers.modules() if isinstance(m, Int8Linear)]
    assert linears and not any(isinstance(m, torch.nn.Linear) for m in q.layers.modules())
    assert isinstance(q.lm_head, Int8Linear) and isinstance(q.embed, torch.nn.Embedding)  # the lookup stays float
    for scheme, shard in (("float32", f32), ("int8", q)):
        fp = footprint(folder, scheme)
        assert shard.layer_bytes() == list(fp.layer_bytes)
        assert tensor_bytes(shard.norm) + tensor_bytes(shard.lm_head) == fp.last_bytes
    assert all(b <= 0.3 * a for a, b in zip(f32.layer_bytes(), q.layer_bytes(), strict=True))
    # a random tiny model's logits are close to ties; what matters is that they stay close to float32's
    _, ref = _run([f32])
    _, got = _run([q])
    for a, b in zip(ref, got, strict=True):
        assert a.shape == b.shape and torch.cosine_similarity(a, b, dim=0) > 0.98


def test_an_int8_model_split_across_shards_computes_what_one_int8_shard_does(folder):
    whole = _run([Shard(folder, 0, 6, scheme="int8")])
    for split in ([(0, 3), (3, 6)], [(0, 1), (1, 5), (5, 6)]):
        assert _run([Shard(folder, a, b, scheme="int8") for a, b in split])[0] == whole[0]


def test_the_scheme_is_part_of_the_model_a_seeker_pins(tmp_path):
    from gtracd.control.peerview import PeerView, WorkerEntry
    from gtracd.routing import Params, route

    folder = tiny_llama(tmp_path, layers=4)
    a, b = ShardServer(folder, 0, 4), ShardServer(folder, 0, 4, scheme="int8")
    assert a.fingerprint != b.fingerprint and a.card_index()["weights"] != b.card_index()["weights"]
    # a seeker pins either without torch, and pins what the worker serves
    assert pinned_model(str(folder)) == (a.fingerprint, 4)
    assert pinned_model(str(folder), scheme_of("int8")) == (b.fingerprint, 4)
    # a session for the other scheme is refused
    with pytest.raises(Refused) as e:
        b.open({"session": b"s" * 16, "model": a.fingerprint, "start": 0, "end": 4, "max_length": 16})
    assert e.value.code == "wrong_model"
    # a seeker pinned to int8 routes only through int8 workers, however fast or trusted the others are
    view = PeerView(model=b.fingerprint, depth=4, probation=8)
    for i, (fp, lat) in enumerate([(a.fingerprint, 1.0), (a.fingerprint, 1.0), (b.fingerprint, 500.0)]):
        view.add(WorkerEntry(f"w{i}", f"/ip4/127.0.0.1/tcp/{4000 + i}/p2p/h{i}", 0, 4, 4, fp, alive=True,
                             latency_ms=lat))
    assert view.pinned()[0] == b.fingerprint
    snap = view.snapshot(b.fingerprint)
    assert {p.id for p in snap.peers} == {"w2"}
    assert [p.id for p in route(snap, "g-trac", Params()).chain] == ["w2"]


def test_a_quantize_setting_names_a_known_scheme():
    assert scheme_of("none") == "float32" and scheme_of("INT8") == "int8" and scheme_of("") == "float32"
    with pytest.raises(UserError, match="none or int8"):
        scheme_of("int4")


@pytest.mark.procs
async def test_int8_worker_processes_serve_a_seeker_pinned_to_int8(tmp_path):
    """`--quantize int8` end to end on tiny workers: the seeker pins the int8 fingerprint (torch-free), routes
    through the int8 workers only, and generates what one int8 shard computes."""
    import random

    from gtracd.control.peerview import PeerView
    from gtracd.identity import Identity
    from gtracd.net.host import running_host
    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation, SeekerNet
    from gtracd.seeker.main import discover

    from .cluster import start_workers, stop_all

    folder = tiny_llama(tmp_path, layers=6)
    ref = _run([Shard(folder, 0, 6, scheme="int8")], steps=10)[0]
    fp, layers = pinned_model(str(folder), "int8")
    ws = start_workers(str(folder), [(0, 3), (3, 6)], extra=["--quantize", "int8"]) + \
        start_workers(str(folder), [(0, 6)])  # a float32 worker of the same folder: another model to this seeker
    try:
        async with running_host(Identity.generate()) as host:
            view = PeerView(model=fp, depth=layers, probation=8)
            net = SeekerNet(host, view)
            assert await discover(net, view, [w.addr for w in ws]) == []
            gen = Generation(net, view, Params(), rng=random.Random(0))
            r = await gen.turn(PROMPT, 10)
            await gen.aclose()
            assert r.tokens == ref[: len(r.tokens)] and (r.tokens == ref or r.eos)
            assert set(gen.chain) == {ws[0].peer_id, ws[1].peer_id}
    finally:
        stop_all(ws)
