"""The data plane end to end over libp2p on loopback: worker processes, a seeker in this process."""

import os
import random
import signal

import pytest
import trio

torch = pytest.importorskip("torch")

from gtracd.control.peerview import PeerView  # noqa: E402
from gtracd.identity import Identity  # noqa: E402
from gtracd.net.framing import FramedStream  # noqa: E402
from gtracd.net.hop import HopError  # noqa: E402
from gtracd.net.host import dial, open_stream, running_host  # noqa: E402
from gtracd.net.protocols import INFER  # noqa: E402
from gtracd.routing import Params  # noqa: E402
from gtracd.seeker.generation import Generation, SeekerNet  # noqa: E402
from gtracd.seeker.main import discover  # noqa: E402
from gtracd.wire import encode_tensor  # noqa: E402
from gtracd.wire.envelope import encode_envelope  # noqa: E402

from .cluster import start_workers, stop_all  # noqa: E402
from .models import tiny_llama  # noqa: E402
from .waiting import until  # noqa: E402

pytestmark = [pytest.mark.model, pytest.mark.procs]


@pytest.fixture(scope="module")
def tiny_cluster(tmp_path_factory):
    folder = tiny_llama(tmp_path_factory.mktemp("tiny"), layers=6)
    ws = start_workers(str(folder), [(0, 3), (3, 6)], extra=["--cache-tokens", "400", "--max-sessions", "4"])
    yield folder, ws
    assert stop_all(ws) == [0, 0]  # clean shutdown on SIGTERM


async def _gen(host, addrs, tokens, n, **kw):
    view = PeerView()
    net = SeekerNet(host, view)
    assert await discover(net, view, addrs) == []
    gen = Generation(net, view, Params(), **kw)
    r = await gen.turn(tokens, n)
    await gen.aclose()
    return r


async def test_tiny_generation_over_libp2p_matches_monolithic(tiny_cluster):
    from .test_shard import monolithic

    folder, ws = tiny_cluster
    prompt = [5, 17, 99, 3, 42, 7]
    _, ref = monolithic(folder, prompt, 10)
    async with running_host(Identity.generate()) as host:
        r = await _gen(host, [w.addr for w in ws], prompt, 10)
    assert r.tokens[: len(ref)] == ref[: len(r.tokens)]
    assert r.tokens == ref or r.eos


async def test_concurrent_generations(tiny_cluster):
    folder, ws = tiny_cluster
    async with running_host(Identity.generate()) as host:
        out = {}

        async def one(k, prompt):
            out[k] = (await _gen(host, [w.addr for w in ws], prompt, 8)).tokens

        async with trio.open_nursery() as n:
            for k, p in enumerate([[5, 6, 7], [8, 9, 10, 11], [12, 13]]):
                n.start_soon(one, k, p)
        for k, p in enumerate([[5, 6, 7], [8, 9, 10, 11], [12, 13]]):
            assert out[k] == (await _gen(host, [w.addr for w in ws], p, 8)).tokens


async def _raw(host, w):
    pid = await dial(host, w.addr)
    return FramedStream(await open_stream(host, pid, INFER))


async def _session(host, w, max_length=300):
    """A raw stream to worker w (layers 3:6) with one session open: (stream, session id)."""
    fs = await _raw(host, w)
    await fs.send("info", {}, 5)
    fp = (await fs.read(5))[1]["model"]
    sid = os.urandom(16)
    await fs.send("open", {"session": sid, "model": fp, "start": 3, "end": 6, "max_length": max_length}, 5)
    assert (await fs.read(5))[0] == "opened"
    return fs, sid


def _hidden(n):
    return encode_tensor("float32", (1, n, 64), bytes(n * 64 * 4))


async def _expect_error(fs, code):
    kind, body = await fs.read(10)
    assert kind == "error", (kind, body)
    assert body["code"] == code, body
    return body


async def test_bad_input_gets_clear_errors_and_worker_keeps_serving(tiny_cluster):
    folder, ws = tiny_cluster
    w0, w1 = ws
    async with running_host(Identity.generate()) as host:
        # a healthy session on w1 that must survive everything below
        good = await _raw(host, w1)
        await good.send("info", {}, 5)
        kind, info = await good.read(5)
        fp = info["model"]
        sid = os.urandom(16)
        await good.send("open", {"session": sid, "model": fp, "start": 3, "end": 6, "max_length": 64}, 5)
        assert (await good.read(5))[0] == "opened"

        def hidden(n, dtype="float32", width=64):
            size = {"float32": 4, "int64": 8}[dtype]
            return encode_tensor(dtype, (1, n, width), bytes(n * width * size))

        await good.send("prefill", {"session": sid, "pos": 0, "hidden": hidden(4)}, 5)
        assert (await good.read(10))[0] == "result"

        bad = await _raw(host, w1)
        await bad.write_raw(b"\xc1\xc1 not msgpack", 5)
        await _expect_error(bad, "bad_frame")
        await bad.write_raw(b"\x80", 5)  # an empty map: not a frame
        await _expect_error(bad, "bad_frame")
        await bad.send("step", {"session": os.urandom(16), "pos": 0, "hidden": hidden(1)}, 5)
        await _expect_error(bad, "unknown_session")
        await bad.send("open", {"session": sid, "model": "0" * 32, "start": 3, "end": 6, "max_length": 8}, 5)
        await _expect_error(bad, "wrong_model")
        await bad.send("open", {"session": sid, "model": fp, "start": 0, "end": 6, "max_length": 8}, 5)
        await _expect_error(bad, "wrong_layers")
        sid2 = os.urandom(16)
        await bad.send("open", {"session": sid2, "model": fp, "start": 3, "end": 6, "max_length": 8}, 5)
        assert (await bad.read(5))[0] == "opened"
        await bad.send("prefill", {"session": sid2, "pos": 0, "hidden": hidden(2, "int64")}, 5)
        await _expect_error(bad, "bad_tensor")
        await bad.send("prefill", {"session": sid2, "pos": 0, "hidden": hidden(2, width=63)}, 5)
        await _expect_error(bad, "bad_tensor")
        raw = {"dtype": "float32", "shape": [1, 2, 64], "data": b"\0" * 10}  # shape x itemsize != len
        from gtracd.wire.codec import packb

        await bad.write_raw(packb({"v": 1, "kind": "prefill", "body": {"session": sid2, "pos": 0, "hidden": raw}}), 5)
        await _expect_error(bad, "bad_tensor")
        await bad.send("prefill", {"session": sid2, "pos": 0, "hidden": hidden(9)}, 5)  # past max_length 8
        await _expect_error(bad, "too_long")
        await bad.send("prefill", {"session": sid2, "pos": 5, "hidden": hidden(1)}, 5)  # pos beyond cache
        await _expect_error(bad, "bad_frame")
        # the healthy session still works
        await good.send("step", {"session": sid, "pos": 4, "hidden": hidden(1)}, 5)
        kind, body = await good.read(10)
        assert kind == "result" and body["cached"] == 5


async def test_oversize_frame_is_refused_and_stream_dropped(tiny_cluster):
    folder, ws = tiny_cluster
    async with running_host(Identity.generate()) as host:
        fs = await _raw(host, ws[1])
        await fs.stream.write((200 * 1024 * 1024).to_bytes(4, "big") + b"x" * 100)
        kind, body = await fs.read(10)
        assert kind == "error" and "exceeds the cap" in body["message"]
        from gtracd.net.framing import StreamClosed

        with pytest.raises(StreamClosed):  # the worker dropped the unframeable stream
            await fs.read(10)
        ok = await _raw(host, ws[1])
        await ok.send("info", {}, 5)
        assert (await ok.read(5))[0] == "info_reply"


async def test_cancel_mid_step(tmp_path, monkeypatch):
    """A cancel read while a prefill computes ends the session: the prefill is answered `cancelled`, a later
    step `unknown_session`. The worker runs in this process and its compute waits until its reader has seen the
    cancel, so the cancel is always mid-step (a 256-token prefill of a tiny model can finish before it lands)."""
    import threading

    from gtracd.config import load_settings
    from gtracd.engine import set_threads
    from gtracd.engine.server import ShardServer
    from gtracd.net.host import multiaddr_of
    from gtracd.protocols.infer import WorkerStream
    from gtracd.worker import main as worker

    seen = threading.Event()

    class Watched(WorkerStream):
        def cancel_seen(self, session):
            r = super().cancel_seen(session)
            seen.set()
            return r

    monkeypatch.setattr(worker, "WorkerStream", Watched)
    set_threads(1)
    srv = ShardServer(tiny_llama(tmp_path / "tiny", layers=6), 3, 6)
    real = srv.compute

    def held(job):  # on the compute thread: the step is in flight until the reader has seen the cancel
        assert seen.wait(30)
        return real(job)

    srv.compute = held
    ident = Identity.generate()
    daemon = worker.WorkerDaemon([worker.Served(ident, srv, "w")], ident.peer_id,
                                 load_settings(flags={"data_dir": str(tmp_path)}), "w")
    async with running_host(ident) as whost, running_host(Identity.generate()) as host:
        whost.set_stream_handler(INFER, daemon.handle)
        with trio.fail_after(60):
            fs = FramedStream(await open_stream(host, await dial(host, multiaddr_of(whost)[0]), INFER))
            sid = os.urandom(16)
            await fs.send("open", {"session": sid, "model": srv.fingerprint, "start": 3, "end": 6,
                                   "max_length": 300}, 5)
            assert (await fs.read(5))[0] == "opened"
            big = _hidden(256)
            await fs.send("prefill", {"session": sid, "pos": 0, "hidden": big}, 5)
            await fs.send("cancel", {"session": sid}, 5)
            body = await _expect_error(fs, "cancelled")
            assert "cancel" in body["message"] and body["session"] == sid
            await fs.send("step", {"session": sid, "pos": 0, "hidden": big}, 5)
            await _expect_error(fs, "unknown_session")
    assert daemon.counters["cancelled"] == 1


async def test_cache_budget_evicts_idle_lru_and_refuses_oversize(tiny_cluster):
    folder, ws = tiny_cluster
    async with running_host(Identity.generate()) as host:
        fs = await _raw(host, ws[1])
        await fs.send("info", {}, 5)
        fp = (await fs.read(5))[1]["model"]
        await fs.send("open", {"session": os.urandom(16), "model": fp, "start": 3, "end": 6, "max_length": 999}, 5)
        kind, body = await fs.read(5)
        assert kind == "opened" and body["max_length"] == 300  # clamped to one peer's share (3/4 of 400)
        sids = [os.urandom(16) for _ in range(3)]
        for sid in sids:  # 3 x 120 tokens > 300: this peer's oldest idle session is evicted
            await fs.send("open", {"session": sid, "model": fp, "start": 3, "end": 6, "max_length": 200}, 5)
            assert (await fs.read(5))[0] == "opened"
            await fs.send("prefill", {"session": sid, "pos": 0,
                                      "hidden": encode_tensor("float32", (1, 120, 64), bytes(120 * 64 * 4))}, 5)
            assert (await fs.read(10))[0] == "result"
        await fs.send("step", {"session": sids[0], "pos": 120,
                               "hidden": encode_tensor("float32", (1, 1, 64), bytes(256))}, 5)
        await _expect_error(fs, "unknown_session")
        await fs.send("step", {"session": sids[2], "pos": 120,
                               "hidden": encode_tensor("float32", (1, 1, 64), bytes(256))}, 5)
        assert (await fs.read(10))[0] == "result"


# ---------------------------------------------------------------- the real model


@pytest.fixture(scope="module")
def smol():
    from gtracd.engine.models import resolve_model

    os.environ.setdefault("GTRACD_MODEL_CACHE", os.path.expanduser("~/.gtracd/models"))
    return resolve_model("smollm2-135m")


def kill_at_piece(victim, n: int):
    """An on_piece callback that kills (-9) `victim`'s process when the n-th piece of text arrives."""
    count = 0

    def on_piece(_):
        nonlocal count
        count += 1
        if count == n:
            victim.proc.send_signal(signal.SIGKILL)

    return on_piece


def smol_reference(folder, n):
    from gtracd.engine.reference import chat_ids, greedy, load

    ids, tok = chat_ids(folder, [{"role": "user", "content": "Tell me a short story about a robot."}])
    return ids, greedy(load(folder), ids, n).tokens, tok


async def test_smollm2_three_workers_match_monolithic_and_survive_kill9(smol):
    ids, ref, tok = smol_reference(smol, 40)
    ws = start_workers("smollm2-135m", [(0, 10), (10, 20), (20, 30), (10, 20)])
    try:
        async with running_host(Identity.generate()) as host:
            view = PeerView()
            net = SeekerNet(host, view)
            assert await discover(net, view, [w.addr for w in ws]) == []
            # failure-free run: 40 greedy tokens identical to monolithic transformers
            gen = Generation(net, view, Params(), rng=random.Random(0))
            r = await gen.turn(ids, 40)
            assert r.tokens == ref
            # the seeker read the text itself, from the card it verified, equal to transformers' decoding
            assert r.text == tok.decode(ref, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            # hop 0 no longer tokenizes: text in a prefill is refused as a bad frame
            hs = gen.hops[0].session
            sid = os.urandom(16)
            h0 = gen.hops[0].peer
            await hs.request("open", {"session": sid, "model": h0.model, "start": 0, "end": 10, "max_length": 64}, 10)
            with pytest.raises(HopError) as ei:
                await hs.request("prefill", {"session": sid, "pos": 0, "text": "Hello world"}, 10)
            assert ei.value.code == "bad_frame"
            await hs.close(sid)
            await gen.aclose()
            # kill -9 the middle worker after token 10; the replacement is replayed and the text is identical
            gen = Generation(net, view, Params(), rng=random.Random(0), hop_timeout_floor_s=30)  # one repair: the kill, never a stall
            await gen.start()
            middle = gen.hops[1].peer.peer_id
            on_piece = kill_at_piece(next(w for w in ws if w.peer_id == middle), 10)

            r2 = await gen.turn(ids, 40, on_piece)
            await gen.aclose()
            assert gen.repairs == 1 and gen.repair_log[0]["failed"] == middle
            assert r2.tokens == ref
            assert tok.decode(r2.tokens) == tok.decode(ref)
            # the trust reports it owes: the killed hop as culprit, then the repaired chain's success; each one
            # is a valid signed envelope
            fail, ok = gen.report_bodies("n", True, None, len(r2.tokens))
            assert fail["outcome"] == "failure" and fail["chain"][fail["culprit"]] == middle and fail["culprit"] == 1
            assert ok["outcome"] == "success" and ok["chain"] == gen.chain and middle not in ok["chain"]
            assert len(ok["latency_ms"]) == 3 and all(ms > 0 for ms in ok["latency_ms"])
            for b in (fail, ok):
                encode_envelope(Identity.generate(), "trust_report", b, seq=1, ts=1.0)
    finally:
        stop_all(ws)


@pytest.mark.parametrize("dtype,size", [("float32", 4), ("float16", 2), ("bfloat16", 2)])
async def test_the_seeker_chooses_the_wire_dtype_of_its_chains_hidden_states(tiny_cluster, dtype, size):
    """Issue 25, bytes on slow links: `wire_dtype` in the open makes every hop answer hidden states in it (half
    the bytes per token per hop in float16/bfloat16); float32 adds nothing to the open (older workers)."""
    folder, ws = tiny_cluster
    prompt = [5, 17, 99, 3, 42, 7]
    async with running_host(Identity.generate()) as host:
        view = PeerView()
        net = SeekerNet(host, view)
        assert await discover(net, view, [w.addr for w in ws]) == []
        gen = Generation(net, view, Params(), wire_dtype=dtype)
        assert ("wire_dtype" in gen._open_body(next(iter(view.workers.values())))) == (dtype != "float32")
        r = await gen.turn(prompt, 8)
        relayed = [c.hidden for c in gen.hops[1].history]  # what hop 0 answered, relayed to hop 1
        await gen.aclose()
    assert len(r.tokens) == 8 or r.eos
    assert all(h["dtype"] == dtype and len(h["data"]) == h["shape"][1] * 64 * size for h in relayed)


async def test_speculative_and_plain_generations_share_batching_workers(tiny_cluster):
    """Concurrent generations, some speculating, some not, through the same workers (which batch the plain
    decode steps and compute each speculative step alone): each gets the tokens it gets alone."""
    folder, ws = tiny_cluster
    prompts = [[5, 6, 7, 5, 6, 7, 5, 6], [8, 9, 10, 11, 8, 9, 10], [12, 13, 12, 13, 12]]  # (the cluster: 4 sessions)
    async with running_host(Identity.generate()) as host:
        alone = [(await _gen(host, [w.addr for w in ws], p, 24)).tokens for p in prompts]
        out = {}

        async def one(k, p):
            out[k] = (await _gen(host, [w.addr for w in ws], p, 24, speculate=4 if k % 2 == 0 else "off")).tokens

        async with trio.open_nursery() as n:
            for k, p in enumerate(prompts):
                n.start_soon(one, k, p)
    assert [out[k] for k in range(len(prompts))] == alone


QUOTE = ("Repeat this passage word for word: The old lighthouse keeper climbed the stairs every evening, "
         "lit the lamp, and watched the ships pass safely through the narrow channel below.")


@pytest.mark.timeout(300)
async def test_smollm2_speculative_text_is_identical_through_spot_checks_and_a_kill9_repair(smol):
    """Issue 26: SmolLM2 over three hops with speculation on (auto) and a quoting prompt, where drafts hold:
    every hop spot-checked on its replica call by call (the last hop's per-position tokens compared too), then
    the middle hop killed mid-generation and repaired; the greedy text equals monolithic transformers."""
    from gtracd.engine.reference import chat_ids, greedy, load

    ids, _ = chat_ids(smol, [{"role": "user", "content": QUOTE}])
    ref = greedy(load(smol), ids, 40).tokens
    ws = start_workers("smollm2-135m", [(0, 10), (10, 20), (20, 30), (10, 20), (20, 30)])
    try:
        async with running_host(Identity.generate()) as host:
            view = PeerView(probation=8)  # all five fresh workers offered to routing and witnesses at once
            net = SeekerNet(host, view)
            assert await discover(net, view, [w.addr for w in ws]) == []
            gen = Generation(net, view, Params(), rng=random.Random(0), speculate="auto", spot_check_rate=1.0,
                             spot_check_calls=100, hop_timeout_floor_s=30)
            r = await gen.turn(ids, 40, ignore_eos=True)  # the quote ends early: 40 tokens all the same
            c, checks = gen.speculation.counters, gen.checker.counters
            await gen.aclose()
            assert r.tokens == ref
            assert c["accepted"] > 0 and len(gen.trace) < 40  # drafts held: fewer trips than tokens
            assert checks["calls"] > 0 and checks["mismatches"] == 0 and checks["hops"] >= 2, checks
            gen = Generation(net, view, Params(), rng=random.Random(1), speculate="auto", hop_timeout_floor_s=30)
            await gen.start()
            on_piece = kill_at_piece(next(w for w in ws if w.peer_id == gen.hops[1].peer.peer_id), 10)

            r2 = await gen.turn(ids, 40, on_piece, ignore_eos=True)
            await gen.aclose()
            assert gen.repairs == 1 and r2.tokens == ref and gen.speculation.counters["accepted"] > 0
    finally:
        stop_all(ws)


async def test_cancelling_a_generation_frees_the_session_on_every_hop(tiny_cluster):
    """What Ctrl-C does in the seeker: the generation's scope is cancelled, then cancel goes to every hop."""
    from gtracd.net.hop import fetch_info

    folder, ws = tiny_cluster
    async with running_host(Identity.generate()) as host:
        view = PeerView()
        net = SeekerNet(host, view)
        await discover(net, view, [w.addr for w in ws])
        gen = Generation(net, view, Params())
        three_steps = trio.Event()
        forward = gen.forward
        calls = []

        async def counting_forward(*a, **kw):
            res = await forward(*a, **kw)
            calls.append(1)
            if len(calls) == 3:
                three_steps.set()
            return res

        gen.forward = counting_forward
        async with trio.open_nursery() as n:
            n.start_soon(gen.turn, [5, 6, 7], 400, None, True)
            with trio.fail_after(30):
                await three_steps.wait()
            n.cancel_scope.cancel()  # what KeyboardInterrupt does to the seeker's tasks
        assert 3 <= len(calls) < 400
        counts = []
        for w in ws:
            lp = await net.peer_id(w.peer_id)
            before = (await fetch_info(host, lp, w.peer_id))["sessions"]
            counts.append(before)
        assert all(c >= 1 for c in counts)  # sessions are still held ...
        await gen.cancel()
        for w in ws:  # ... until the seeker cancels them
            lp = await net.peer_id(w.peer_id)

            async def freed(lp=lp, w=w) -> bool:
                return (await fetch_info(host, lp, w.peer_id))["sessions"] == 0

            await until(freed, 5, f"the sessions on {w.peer_id[-8:]} freed", step=0.02)


async def test_seeker_vanishing_mid_request_does_not_hurt_the_worker(tiny_cluster):
    folder, ws = tiny_cluster
    async with running_host(Identity.generate()) as host:
        fs, sid = await _session(host, ws[1])
        big = _hidden(256)
        await fs.send("prefill", {"session": sid, "pos": 0, "hidden": big}, 5)
        await fs.reset()  # gone before the result can be written back
        ok = await _raw(host, ws[1])
        await ok.send("info", {}, 5)
        kind, info = await ok.read(5)
        assert kind == "info_reply"
    assert ws[1].proc.poll() is None


@pytest.mark.parametrize("sampling", [None, {"temperature": 0.9, "top_k": 0, "top_p": 0.95, "seed": 7}])
async def test_speculative_steps_generate_what_plain_steps_do(tiny_cluster, sampling, monkeypatch):
    """Issue 26: drafts from prompt lookup go through the chain as one step; the kept tokens equal plain
    decoding's, greedy or sampled (the last hop samples every position as a plain step there would)."""
    folder, ws = tiny_cluster
    if sampling:  # sampled text rarely repeats itself: drafts that mostly fail, from the prompt's own tokens
        import gtracd.seeker.generation as generation

        monkeypatch.setattr(generation, "propose", lambda ctx, k: [5, 17, 99, 3, 42, 7][:k])
    prompt = [5, 17, 99, 3, 42, 7] * 4
    async with running_host(Identity.generate()) as host:
        plain = await _gen(host, [w.addr for w in ws], prompt, 48, sampling=sampling)
        view = PeerView()
        net = SeekerNet(host, view)
        assert await discover(net, view, [w.addr for w in ws]) == []
        gen = Generation(net, view, Params(), sampling=sampling, speculate=4)
        r = await gen.turn(prompt, 48)
        c = gen.speculation.counters
        assert r.tokens == plain.tokens
        assert c["trips"] > 0
        if not sampling:  # the tiny model repeats itself: drafts hold, fewer trips than tokens
            assert c["accepted"] > 0 and len(gen.trace) < 48
        # the chain's histories hold only kept positions: a second turn reuses them exactly
        r2 = await gen.turn(prompt + r.tokens + [5, 17], 8)
        await gen.aclose()
        plain2 = await _gen(host, [w.addr for w in ws], prompt + r.tokens + [5, 17], 8, sampling=sampling)
        assert r2.tokens == plain2.tokens and r2.reused == len(prompt) + len(r.tokens) - 1
