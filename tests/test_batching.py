"""Batched decoding (engine/batching.py): decode steps of sessions at different cache lengths, computed in one
forward pass per shard, give the greedy tokens of stepping each session alone — with sessions joining and
leaving the batch between steps, on both model families and across a shard boundary."""

import random

import pytest

torch = pytest.importorskip("torch")

from gtracd.engine.batching import forward_steps  # noqa: E402
from gtracd.engine.shard import Shard  # noqa: E402

from .models import tiny_gemma3, tiny_gpt2, tiny_llama  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.timeout(300)]
SPLIT = [(0, 2), (2, 5), (5, 6)]


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma3", "gemma3-int8"])
def shards(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    build = {"llama": tiny_llama, "gpt2": tiny_gpt2}.get(request.param, tiny_gemma3)  # gemma3: window 8 < lengths
    folder = build(d)
    if request.param.endswith("int8"):
        return [Shard(folder, a, b, scheme="int8") for a, b in SPLIT]
    return [Shard(folder, a, b) for a, b in SPLIT]


def _prefill(shards, prompt):
    caches = [s.new_cache() for s in shards]
    h = None
    for s, c in zip(shards, caches, strict=True):
        o = s.forward(c, 0, input_ids=torch.tensor(prompt) if s.first else None, hidden=h)
        h = o.hidden
    return caches, int(o.logits.argmax())


def _step_alone(shards, caches, pos, tok):
    h = None
    for s, c in zip(shards, caches, strict=True):
        o = s.forward(c, pos, input_ids=torch.tensor([tok]) if s.first else None, hidden=h)
        h = o.hidden
    return o.logits


def _step_together(shards, sessions):
    """sessions: [(caches, pos, tok)]: one forward pass per shard for all of them."""
    hidden = None
    for k, s in enumerate(shards):
        caches = [c[k] for c, _, _ in sessions]
        positions = [p for _, p, _ in sessions]
        if s.first:
            hidden, logits = forward_steps(s, caches, positions, input_ids=[t for _, _, t in sessions])
        else:
            hidden, logits = forward_steps(s, caches, positions, hidden=hidden)
    return logits


def test_batched_steps_give_the_greedy_tokens_of_unbatched_ones(shards):
    rng = random.Random(7)
    prompts = [[rng.randrange(1, 250) for _ in range(n)] for n in (3, 9, 1, 14, 6, 11, 2, 8)]
    steps = 12
    alone = []
    for p in prompts:  # each session on its own, as a worker without batching steps it
        caches, tok = _prefill(shards, p)
        toks, logits = [tok], []
        for i in range(steps):
            logits.append(_step_alone(shards, caches, len(p) + i, toks[-1]))
            toks.append(int(logits[-1].argmax()))
        alone.append((toks, logits))
    state = []
    for p in prompts:
        caches, tok = _prefill(shards, p)
        state.append({"caches": caches, "pos": len(p), "toks": [tok], "logits": []})
    worst = 0.0
    for i in range(steps + 4):  # sessions join late and leave early: the batch changes between steps
        ready = [st for k, st in enumerate(state) if k // 2 <= i and len(st["logits"]) < steps]
        if not ready:
            continue
        logits = _step_together(shards, [(st["caches"], st["pos"], st["toks"][-1]) for st in ready])
        for st, row in zip(ready, logits, strict=True):
            st["logits"].append(row)
            st["toks"].append(int(row.argmax()))
            st["pos"] += 1
    for st, (toks, logits) in zip(state, alone, strict=True):
        assert st["toks"] == toks
        for a, b in zip(st["logits"], logits, strict=True):
            worst = max(worst, float((a - b).abs().max()))
    # the rows of one matmul may round apart from a matmul of one row, barely (int8: in bfloat16 activations)
    assert worst < (1e-4 if shards[0].scheme == "float32" else 2e-2), worst
    print(f"largest logit difference batched vs alone: {worst:.3g}")


def test_a_batch_of_one_is_the_unbatched_step(shards):
    caches, tok = _prefill(shards, [5, 17, 99, 3])
    twin, _ = _prefill(shards, [5, 17, 99, 3])
    a = _step_alone(shards, caches, 4, tok)
    b = _step_together(shards, [(twin, 4, tok)])[0]
    assert torch.allclose(a, b, atol=1e-5) and int(a.argmax()) == int(b.argmax())


async def test_a_worker_batches_concurrent_sessions_and_answers_as_it_does_one_at_a_time(tmp_path):
    """A worker in this process behind real libp2p streams: six sessions stepped together (held at the compute
    slot until all six wait, so every step is one pass of six) answer the tokens they answer one at a time."""
    import os

    import trio

    from gtracd.config import load_settings
    from gtracd.engine import set_threads
    from gtracd.engine.server import ShardServer
    from gtracd.identity import Identity
    from gtracd.net.hop import HopSession
    from gtracd.net.host import dial, multiaddr_of, running_host
    from gtracd.net.protocols import INFER
    from gtracd.worker.main import Served, WorkerDaemon

    set_threads(1)
    folder = tiny_llama(tmp_path / "tiny", layers=4)
    srv = ShardServer(folder, 0, 4)
    passes: list[int] = []
    real = srv.compute_batch
    srv.compute_batch = lambda jobs: (passes.append(len(jobs)), real(jobs))[1]
    ident = Identity.generate()
    daemon = WorkerDaemon([Served(ident, srv, "w")], ident.peer_id, load_settings(flags={"data_dir": str(tmp_path)}),
                          "w")
    rng = random.Random(3)
    prompts = [[rng.randrange(1, 250) for _ in range(n)] for n in (2, 7, 4, 12, 1, 9)]
    steps = 8

    async with running_host(ident) as whost, running_host(Identity.generate()) as chost:
        whost.set_stream_handler(INFER, daemon.handle)
        pid = await dial(chost, multiaddr_of(whost)[0])

        async def opened(prompt):
            hs, sid = HopSession(chost, pid, ident.peer_id), os.urandom(16)
            await hs.open({"session": sid, "model": srv.fingerprint, "start": 0, "end": 4, "max_length": 64}, 10)
            res = await hs.request("prefill", {"session": sid, "pos": 0, "tokens": prompt}, 10)
            return {"hs": hs, "sid": sid, "pos": len(prompt), "toks": [res["token"]]}

        async def step(st):
            res = await st["hs"].request("step", {"session": st["sid"], "pos": st["pos"], "tokens": [st["toks"][-1]]},
                                         10)
            st["pos"] += 1
            st["toks"].append(res["token"])

        with trio.fail_after(120):
            alone = []
            for p in prompts:  # one at a time: every pass is a pass of one
                st = await opened(p)
                for _ in range(steps):
                    await step(st)
                await st["hs"].close(st["sid"])
                alone.append(st["toks"])
            assert set(passes) == {1}
            together = [await opened(p) for p in prompts]
            passes.clear()  # (a one-token prompt's prefill is a step too)
            for _ in range(steps):
                async with trio.open_nursery() as n:
                    async with daemon.compute.slot("someone else"):  # busy: the six steps arrive and wait
                        for st in together:
                            n.start_soon(step, st)
                        while len(daemon.batcher.pending.get(id(srv), [])) < len(prompts):
                            await trio.sleep(0.001)
            for st in together:
                await st["hs"].close(st["sid"])
    assert passes == [len(prompts)] * steps
    assert [st["toks"] for st in together] == alone
    assert srv.batches == steps and srv.batched_steps == steps * len(prompts)  # passes of more than one
