"""The OpenAI-compatible API, driven by the real `openai` client over a loopback socket: a seeker service in
this process (seeker/service.py + seeker/api/app.py under hypercorn's trio worker) routing over tiny-model worker
processes (layers 0:3 and two replicas of 3:6, a character tokenizer with a chat template)."""

from __future__ import annotations

import json

import pytest
import trio

torch = pytest.importorskip("torch")
openai = pytest.importorskip("openai")

from gtracd.config import Settings  # noqa: E402
from gtracd.control.peerview import PeerView  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.hop import fetch_info  # noqa: E402
from gtracd.net.host import running_host  # noqa: E402
from gtracd.seeker.api.app import Api  # noqa: E402
from gtracd.seeker.api.server import serve_api  # noqa: E402
from gtracd.seeker.generation import SeekerNet  # noqa: E402
from gtracd.seeker.service import SeekerService, discover  # noqa: E402

from .cluster import start_workers, stop_all  # noqa: E402
from .models import char_tokenizer, tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs, pytest.mark.timeout(120)]
MODEL = "tiny-chat"


RANGES = [(0, 3), (3, 6), (3, 6)]
EXTRA = ["--cache-tokens", "4000", "--max-sessions", "16"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    folder = tiny_llama(tmp_path_factory.mktemp("tiny-chat"), layers=6)
    char_tokenizer(folder)
    ws = start_workers(str(folder), RANGES, extra=EXTRA)
    yield folder, ws
    stop_all(ws)


@pytest.fixture
def workers(pool):
    """The module's workers, each one a test killed restarted first: tests do not depend on their order."""
    folder, ws = pool
    dead = [i for i, w in enumerate(ws) if w.proc.poll() is not None]
    if dead:
        for i, w in zip(dead, start_workers(str(folder), [RANGES[i] for i in dead], extra=EXTRA), strict=True):
            ws[i] = w
    return ws


class Seeker:
    """The service and its API on an ephemeral loopback port, plus the clients that talk to it."""

    def __init__(self, host, view, service, api, url):
        self.host, self.view, self.service, self.api, self.url = host, view, service, api, url
        self.client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)

    async def sessions(self, ws) -> list[int]:
        out = []
        for w in ws:
            if w.proc.poll() is not None:
                out.append(0)
                continue
            lp = await self.service.net.peer_id(w.peer_id)
            out.append((await fetch_info(self.host, lp, w.peer_id))["sessions"])
        return out


async def _seeker(nursery, host, ws, model: str = MODEL, **kw) -> Seeker:
    view = PeerView()
    net = SeekerNet(host, view)
    assert await discover(net, view, [w.addr for w in ws if w.proc.poll() is None]) == []
    s = Settings(max_length=512)
    service = SeekerService(net, view, s, **kw)
    api = Api(service, model, max_tokens_cap=512, default_max_tokens=16)
    urls = await nursery.start(serve_api, api, "127.0.0.1:0")
    return Seeker(host, view, service, api, urls[0])


async def test_models_completion_chat_streaming_usage_and_stop(workers):
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        c = sk.client
        models = await c.models.list()
        assert [m.id for m in models.data] == [MODEL]
        r = await c.completions.create(model=MODEL, prompt="Hello there", max_tokens=12)
        assert r.object == "text_completion" and r.choices[0].finish_reason in ("stop", "length")
        assert r.usage.prompt_tokens > 0 and 0 < r.usage.completion_tokens <= 12
        msgs = [{"role": "user", "content": "Say something"}]
        whole = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12)
        assert whole.object == "chat.completion" and whole.choices[0].message.role == "assistant"
        text = whole.choices[0].message.content
        # streaming: the same greedy text, role first, one id, finish on the last chunk, then usage
        stream = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, stream=True,
                                                 stream_options={"include_usage": True})
        chunks = [ch async for ch in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        assert len({ch.id for ch in chunks}) == 1
        assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == text
        assert chunks[-2].choices[0].finish_reason == whole.choices[0].finish_reason
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
        # a stop string inside the text ends it there, finish_reason stop
        if len(text) >= 4:
            cut = text[2:4]
            stopped = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12, stop=[cut, "zzzz"])
            assert stopped.choices[0].message.content == text[:text.index(cut)]
            assert stopped.choices[0].finish_reason == "stop"
        n.cancel_scope.cancel()


async def test_every_answer_says_who_answered_and_a_request_may_ask_for_stricter_terms(workers):
    """Issue 23, provenance: the `gtracd` field of a response (and of a stream's finish) names the chain
    (peer, host, layers, trust when chosen), the spot checks and the repairs; the `gtracd` request field
    excludes peers and hosts and raises the spot-check rate and the trust floor."""
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        c = sk.client
        msgs = [{"role": "user", "content": "Who are you?"}]
        with pytest.raises(openai.APIStatusError) as ei:  # nobody has earned 0.999 yet
            await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6,
                                            extra_body={"gtracd": {"min_trust": 0.999}})
        assert ei.value.status_code == 503
        r = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6,
                                            extra_body={"gtracd": {"spot_check_rate": 1.0}})
        prov = r.model_extra["gtracd"]
        assert [h["layers"] for h in prov["chain"]] == [[0, 3], [3, 6]]
        assert all(0.0 < h["trust"] <= 1.0 and h["peer"] and h["host"] for h in prov["chain"])
        # every hop checked: the 3:6 hop against its replica, the 0:3 hop has none
        assert prov["spot_checks"]["rate"] == 1.0 and prov["spot_checks"]["calls"] > 0
        assert prov["spot_checks"]["no_replica"] >= 1 and prov["spot_checks"]["convicted"] == [] and prov["repairs"] == []
        second = prov["chain"][1]["peer"]
        other = next(w.peer_id for w in workers[1:] if w.peer_id != second)
        r2 = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6,
                                             extra_body={"gtracd": {"exclude_peers": [second]}})
        assert r2.model_extra["gtracd"]["chain"][1]["peer"] == other
        host1 = prov["chain"][1]["host"]
        with pytest.raises(openai.APIStatusError) as ei:  # both replicas of 3:6 run on other hosts; 0:3's excluded
            await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6,
                                            extra_body={"gtracd": {"exclude_hosts": [prov["chain"][0]["host"]]}})
        assert ei.value.status_code == 503
        with pytest.raises(openai.BadRequestError):
            await c.chat.completions.create(model=MODEL, messages=msgs, extra_body={"gtracd": {"min_trust": 7}})
        stream = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, stream=True)
        chunks = [ch async for ch in stream]
        fin = [ch for ch in chunks if ch.choices and ch.choices[0].finish_reason]
        assert fin and fin[0].model_extra["gtracd"]["chain"][1]["host"] in (host1, *[
            h["host"] for h in r2.model_extra["gtracd"]["chain"]])
        n.cancel_scope.cancel()


async def test_context_reuse_hit_and_miss_and_an_evicted_cache_falls_back(workers):
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        c = sk.client
        msgs = [{"role": "user", "content": "Tell me a long story about the sea and ships"}]
        one = await c.chat.completions.create(model=MODEL, messages=msgs, max_tokens=10)
        assert one.usage.prompt_tokens_details.cached_tokens == 0
        msgs2 = msgs + [{"role": "assistant", "content": one.choices[0].message.content},
                        {"role": "user", "content": "More"}]
        two = await c.chat.completions.create(model=MODEL, messages=msgs2, max_tokens=10)
        assert two.usage.prompt_tokens_details.cached_tokens >= one.usage.prompt_tokens  # the first turn reused
        assert sk.service.contexts.hits == 1 and sk.service.contexts.misses == 1
        other = await c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Unrelated"}],
                                                max_tokens=10)
        assert other.usage.prompt_tokens_details.cached_tokens == 0 and sk.service.contexts.misses == 2
        # the same answer from a seeker that never saw the conversation
        fresh = await _seeker(n, host, workers)
        ref = await fresh.client.chat.completions.create(model=MODEL, messages=msgs2, max_tokens=10)
        assert two.choices[0].message.content == ref.choices[0].message.content
        # a worker evicts the kept session: the next turn repairs (reopens, replays) and answers the same
        msgs3 = msgs2 + [{"role": "assistant", "content": two.choices[0].message.content},
                         {"role": "user", "content": "And then?"}]
        kept = [ctx for ctx in sk.service.contexts._idle.values() if len(ctx.said) == 4][0]
        hop = kept.gen.hops[1]
        await hop.session.close(kept.gen.sid)  # the worker forgets it, as an eviction would
        hop.session.fs = None
        three = await c.chat.completions.create(model=MODEL, messages=msgs3, max_tokens=10)
        ref3 = await fresh.client.chat.completions.create(model=MODEL, messages=msgs3, max_tokens=10)
        assert three.choices[0].message.content == ref3.choices[0].message.content
        n.cancel_scope.cancel()


async def test_client_disconnect_cancels_every_hop(workers):
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        stream = await sk.client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "A long one"}], max_tokens=480, stream=True,
            extra_body={"ignore_eos": True})
        async for first in stream:  # the role chunk comes with the first token
            assert first.choices[0].delta.role == "assistant"
            break
        await stream.close()  # the client goes away mid-stream (480 tokens take seconds here)
        t0 = trio.current_time()
        # every hop's session is gone, by a cancel (a finished generation would not count as `cancelled`); it
        # takes well under a second here, but a deadline that tight is a timing assert on a loaded CI machine
        async def gone() -> bool:
            return sk.service.counters["cancelled"] == 1 and sum(await sk.sessions(workers)) == 0

        await until(gone, 10.0, "every hop's session cancelled", step=0.02)
        print(f"every hop's session gone {trio.current_time() - t0:.2f} s after the client left")
        assert sk.api.counters["disconnects"] == 1 and sk.service.counters["requests"] == 1
        n.cancel_scope.cancel()


async def test_the_python_client_generates_chats_streams_and_cancels(workers):
    import gtracd

    peers = [w.addr for w in workers if w.proc.poll() is None]
    msgs = [{"role": "user", "content": "Say something"}]
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        ref = (await sk.client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=12)).choices[0]
        fp = sk.service.model()  # the model's fingerprint, as workers announce it
        n.cancel_scope.cancel()
    ref = ref.message.content
    async with gtracd.open_client(peers=peers, model=fp, max_length=512) as c:
        assert await c.chat(msgs, max_tokens=12) == ref  # the HTTP API and the client agree
        async with c.stream_chat(msgs, max_tokens=12) as pieces:
            assert "".join([p async for p in pieces]) == ref
        async with c.stream("A long one", max_tokens=400, ignore_eos=True) as pieces:
            async for _ in pieces:
                break  # leaving early cancels the request on every hop
        assert c.service.counters["cancelled"] == 1

    def sync_use() -> tuple[str, str]:
        with gtracd.Client(peers=peers, model=fp, max_length=512) as c:
            return c.chat(msgs, max_tokens=12), "".join(c.stream_chat(msgs, max_tokens=12))

    assert await trio.to_thread.run_sync(sync_use) == (ref, ref)


async def test_a_mid_stream_failure_is_repaired_and_the_answer_is_unchanged(workers):
    """The chain's last hop is killed (-9) mid-stream; repair moves it to the replica and the text is what the
    fault-free run gave."""
    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        args = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 40}
        ref = (await sk.client.completions.create(**args)).choices[0].text
        stream = await sk.client.completions.create(**args, stream=True)
        text, killed = [], None
        async for ch in stream:
            text.append(ch.choices[0].text)
            if killed is None and len(text) == 5:
                counts = await sk.sessions(workers)
                killed = next(i for i in (1, 2) if counts[i] >= 1)  # the 3:6 replica in the chain
                workers[killed].kill9()
        assert "".join(text) == ref and killed is not None
        n.cancel_scope.cancel()


async def test_errors_bad_bodies_unknown_model_and_a_failure_after_the_first_token(workers):
    import httpx

    async with running_host(Identity.generate()) as host, trio.open_nursery() as n:
        sk = await _seeker(n, host, workers)
        async with httpx.AsyncClient(base_url=sk.url, timeout=30) as h:
            js = {"content-type": "application/json"}
            r = await h.post("/v1/chat/completions", content=b"{not json", headers=js)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
            r = await h.post("/v1/chat/completions", content=b"x" * (2 << 20), headers=js)
            assert r.status_code == 400 and r.json()["error"]["code"] == "body_too_large"
            # what a web page in the user's browser could send: refused before any work
            ok = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2}).encode()
            r = await h.post("/v1/completions", content=ok, headers={"content-type": "text/plain"})
            assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
            r = await h.post("/v1/completions", content=ok, headers={**js, "origin": "https://evil.example"})
            assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
            r = await h.get("/v1/models", headers={"host": "rebound.evil.example:8080"})  # DNS rebinding
            assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
            r = await h.post("/v1/completions", content=ok, headers={**js, "origin": "http://localhost:3000"})
            assert r.status_code == 200 and sk.service.counters["requests"] >= 1
            r = await h.post("/v1/chat/completions", json={"model": MODEL, "messages": []})
            assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
            r = await h.post("/v1/completions", json={"model": MODEL, "prompt": "x", "temperature": "hot"})
            assert r.status_code == 400 and r.json()["error"]["param"] == "temperature"
            r = await h.post("/v1/completions", json={"model": "gpt-9", "prompt": "x"})
            assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
            r = await h.get("/v1/nothing")
            assert r.status_code == 404
        with pytest.raises(openai.BadRequestError):
            await sk.client.completions.create(model=MODEL, prompt="x", max_tokens=0)
        with pytest.raises(openai.BadRequestError, match="do not fit"):  # the chain granted 512 positions
            await sk.client.completions.create(model=MODEL, prompt="y" * 600, max_tokens=4)
        full = await _seeker(n, host, workers, max_requests=0)  # every slot taken: 429, streaming or not
        for stream in (False, True):
            with pytest.raises(openai.RateLimitError):
                await full.client.completions.create(model=MODEL, prompt="x", max_tokens=4, stream=stream)
        # every replica of 3:6 gone after the first tokens: an error chunk, then [DONE]
        async with httpx.AsyncClient(base_url=sk.url, timeout=60) as h:
            async with h.stream("POST", "/v1/completions", json={"model": MODEL, "prompt": "Go", "max_tokens": 200,
                                                                 "stream": True}) as resp:
                assert resp.status_code == 200
                events = []
                async for line in resp.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    events.append(line[6:])
                    if len(events) == 3:
                        for w in workers[1:]:
                            w.kill9()
        assert events[-1] == "[DONE]" and "error" in json.loads(events[-2])
        n.cancel_scope.cancel()
