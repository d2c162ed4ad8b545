"""SmolLM2 behind the HTTP API: a two-turn chat reuses the first turn's KV caches and answers both."""

from __future__ import annotations

import pytest
import trio

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")

from gtracd.identity import Identity  # noqa: E402
from gtracd.net.host import running_host  # noqa: E402

from .cluster import start_workers, stop_all  # noqa: E402
from .test_api import _seeker  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.slow, pytest.mark.procs, pytest.mark.timeout(900)]


async def test_two_turn_chat_reuses_the_cache_and_answers_paris_then_berlin():
    from gtracd.engine.models import resolve_model

    resolve_model("smollm2-135m")
    ws = start_workers("smollm2-135m", [(0, 10), (10, 20), (20, 30)])
    try:
        async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
            sk = await _seeker(n, host, ws, model="smollm2-135m")
            c = sk.client
            msgs = [{"role": "user", "content": "What is the capital of France?"}]
            one = await c.chat.completions.create(model="smollm2-135m", messages=msgs, max_tokens=32)
            assert "Paris" in one.choices[0].message.content
            msgs += [{"role": "assistant", "content": one.choices[0].message.content},
                     {"role": "user", "content": "And the capital of Germany?"}]
            two = await c.chat.completions.create(model="smollm2-135m", messages=msgs, max_tokens=32)
            assert "Berlin" in two.choices[0].message.content
            assert two.usage.prompt_tokens_details.cached_tokens >= one.usage.prompt_tokens
            assert sk.service.contexts.hits == 1
            n.cancel_scope.cancel()
    finally:
        stop_all(ws)
