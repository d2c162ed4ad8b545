"""The inference session protocol as pure state machines (gtracd/protocols/infer.py), without sockets: each side on
its own, then the two sides talking through the real frame codec with a stand-in compute, under arbitrary
request scripts and worker refusals (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtracd.errors import DecodeError
from gtracd.protocols.infer import (
    REPLIES,
    End,
    Extend,
    HopStream,
    NotOpen,
    Open,
    ProtocolError,
    Query,
    Refusal,
    Reject,
    Reply,
    Violation,
    WorkerStream,
)
from gtracd.wire.frames import decode_frame, encode_frame

S1, S2, S3 = b"a" * 16, b"b" * 16, b"c" * 16
OPEN = {"model": "m", "start": 0, "end": 4, "max_length": 64}


def test_worker_stream_events():
    w = WorkerStream()
    assert isinstance(w.receive("info", {}), Query) and isinstance(w.receive("card", {}), Query)
    assert isinstance(w.receive("tokenize", {"text": "x"}), Reject)  # seekers tokenize themselves
    assert w.receive("step", {"session": S1, "pos": 0}) == Reject("unknown_session", "session not opened on this "
                                                                    "stream", S1)
    ev = w.receive("open", {"session": S1, **OPEN})
    assert ev == Open(S1, {"session": S1, **OPEN})
    w.opened(S1, "h1")
    assert w.receive("open", {"session": S1, **OPEN}).code == "bad_frame"  # already open on this stream
    ev = w.receive("prefill", {"session": S1, "pos": 0, "tokens": [1]})
    assert isinstance(ev, Extend) and ev.handle == "h1" and ev.kind == "prefill"
    assert w.finished(S1) is None  # nothing happened meanwhile: send the result
    assert w.cancel_seen(S1) and not w.cancel_seen(S2)  # the reader saw a cancel mid-step
    ev = w.finished(S1)
    assert ev.code == "cancelled" and ev.ended == "h1" and S1 not in w.sessions  # the result is dropped
    assert w.receive("cancel", {"session": S1}) is None  # (the cancel frame itself: already handled)
    w.opened(S2, "h2")
    w.cancel_seen(S2)
    ev = w.receive("step", {"session": S2, "pos": 3})
    assert isinstance(ev, Reject) and ev.code == "cancelled" and ev.ended == "h2"
    w.opened(S3, "h3")
    assert w.receive("close", {"session": S3}) == End(S3, "h3", False)
    assert w.receive("close", {"session": S3}) is None
    assert w.receive("opened", {"session": S3}).message == "a worker does not take 'opened' frames"
    assert w.receive("_bad", DecodeError("bad dtype", "body.hidden")).code == "bad_tensor"
    assert w.receive("_bad", DecodeError("bad", "body.pos")).code == "bad_frame"
    w.opened(S1, "x")
    w.opened(S2, "y")
    assert sorted(w.close_all()) == ["x", "y"] and w.sessions == {}


def test_hop_stream_rules():
    h = HopStream()
    with pytest.raises(NotOpen, match="before the session was opened"):  # (the driver: as unknown_session)
        h.send("step", {"session": S1, "pos": 0})
    assert h.send("open", {"session": S1, **OPEN}) == "opened"
    with pytest.raises(ProtocolError, match="awaits its reply"):
        h.send("info", {})
    assert h.send("cancel", {"session": S2}) is None  # cancel / close may overtake a request in flight
    assert isinstance(h.receive("opened", {"session": S1, "cached": 0}), Reply) and S1 in h.opened
    h.send("step", {"session": S1, "pos": 0})
    assert h.receive("error", {"code": "busy", "message": "full", "retry_after_s": 2.0}) == Refusal("busy", "full",
                                                                                                     2.0)
    h.send("step", {"session": S1, "pos": 0})  # a refusal leaves the stream usable
    assert h.receive("result", {"session": S1, "cached": 1, "compute_ms": 1.0}).kind == "result"
    h.send("step", {"session": S1, "pos": 1})
    assert h.receive("error", {"code": "unknown_session", "message": "evicted", "session": S1}).code == \
        "unknown_session" and S1 not in h.opened  # evicted: open it again before extending
    h.send("open", {"session": S1, **OPEN})
    v = h.receive("opened", {"session": S2, "cached": 0})
    assert isinstance(v, Violation) and "another session" in v.why and h.is_broken
    with pytest.raises(ProtocolError):
        h.send("info", {})
    for bad, expect in ((("result", {"session": S1}), "answered result to info"),
                        (("tokens", {"tokens": []}), "unsolicited")):
        h = HopStream()
        if expect != "unsolicited":
            h.send("info", {})
        v = h.receive(*bad)
        assert isinstance(v, Violation) and expect in v.why and h.is_broken


# ---------------------------------------------------------------------------------------------- both sides
def wire(kind: str, body: dict) -> tuple[str, dict]:
    return decode_frame(encode_frame(kind, body, check=True))


class Worker:
    """A worker driver over WorkerStream with a stand-in compute: a session's cache is the list of tokens
    it was extended with; `refuse` decides which requests are refused (busy) instead."""

    def __init__(self, refuse):
        self.stream = WorkerStream()
        self.refuse = refuse
        self.caches: dict[bytes, list[int]] = {}
        self.n = 0

    def handle(self, kind: str, body: dict) -> list[tuple[str, dict]]:
        ev = self.stream.receive(kind, body)
        self.n += 1
        if ev is None:
            return []
        if isinstance(ev, Reject):
            if ev.ended is not None:
                self.caches.pop(ev.ended, None)
            return [("error", {"code": ev.code, "message": ev.message,
                               **({"session": ev.session} if ev.session else {})})]
        if isinstance(ev, End):
            del self.caches[ev.handle]
            return []
        if self.refuse(self.n):
            return [("error", {"code": "busy", "message": "no room", "retry_after_s": 1.0})]
        if isinstance(ev, Query):
            return [(REPLIES[ev.kind], {"weights": "0" * 64, "files": {"tokenizer.json": 2}} if ev.kind == "card" else {
                "peer_id": "12D3KooWworker", "name": "w", "model": "m", "family": "llama", "start": 0, "end": 4,
                "total_layers": 4, "hidden_size": 8, "free_tokens": 10, "sessions": 0, "version": "x"})]
        if isinstance(ev, Open):
            self.stream.opened(ev.session, ev.session)
            self.caches[ev.session] = []
            return [("opened", {"session": ev.session, "cached": 0})]
        cache = self.caches[ev.handle]
        del cache[ev.body["pos"]:]
        cache += ev.body["tokens"]
        return [("result", {"session": ev.session, "cached": len(cache), "token": sum(cache) % 256,
                            "compute_ms": 0.1})]


ACTION = st.tuples(st.sampled_from(["info", "card", "open", "prefill", "step", "cancel", "close"]),
                   st.sampled_from([S1, S2, S3]), st.lists(st.integers(0, 255), min_size=1, max_size=4))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ACTION, max_size=40), st.sets(st.integers(1, 60), max_size=10))
def test_both_sides_agree_under_any_script_and_refusals(script, refused):
    """A seeker driver that only sends what HopStream allows and an honest worker: every request gets exactly
    its reply or a refusal, never a violation; the sessions the seeker believes open are the worker's; a
    session's cache holds exactly what the seeker extended it with."""
    hop, worker = HopStream(), Worker(lambda n: n in refused)
    mine: dict[bytes, list[int]] = {}  # what the seeker extended each open session with
    for kind, sid, toks in script:
        body = {"session": sid}
        if kind == "open":
            body.update(OPEN)
        elif kind in ("prefill", "step"):
            pos = len(mine.get(sid, []))
            body.update(pos=pos, tokens=toks)
        elif kind in ("info", "card"):
            body = {}
        try:
            expect = hop.send(kind, body)
        except ProtocolError:
            continue  # the driver would not send it
        replies = worker.handle(*wire(kind, body))
        if expect is None:
            assert replies == []
            mine.pop(sid, None)
            continue
        assert len(replies) == 1
        ev = hop.receive(*wire(*replies[0]))
        assert not isinstance(ev, Violation), ev
        if isinstance(ev, Reply) and kind == "open":
            mine[sid] = []
        elif isinstance(ev, Reply) and kind in ("prefill", "step"):
            mine[sid] += toks
            assert ev.body["cached"] == len(mine[sid]) and ev.body["token"] == sum(mine[sid]) % 256
        assert hop.waiting is None
    assert hop.opened == set(worker.stream.sessions) == set(mine) == set(worker.caches)
    assert all(worker.caches[s] == mine[s] for s in mine)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted({*REPLIES, *REPLIES.values(), "cancel", "close", "error", "_bad",
                                                    "junk"})),
                          st.sampled_from([S1, S2, None])), max_size=40))
def test_a_worker_stream_takes_any_frame_sequence(frames):
    """Whatever arrives, the worker's machine answers with an event (never raises), and extends and ends only
    sessions it holds."""
    w = WorkerStream()
    for kind, sid in frames:
        body = DecodeError("junk") if kind == "_bad" else ({"session": sid} if sid else {})
        held = set(w.sessions)
        ev = w.receive(kind, body)
        if isinstance(ev, Open):
            w.opened(ev.session, ev.session)
        if isinstance(ev, (Extend, End)):
            assert ev.session in held and ev.handle == ev.session
        if isinstance(ev, End):
            assert ev.session not in w.sessions
