
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtracd.errors import DecodeError, Dropped
from gtracd.identity import Identity
from gtracd.wire import (
    Signer,
    Verifier,
    decode_envelope,
    decode_frame,
    decode_tensor,
    encode_frame,
    encode_tensor,
)
from gtracd.wire.envelope import encode_envelope

ALICE = Identity(bytes(range(32)))
MALLORY = Identity(bytes(range(1, 33)))
NOW = 1_800_000_000.0


def hb(**kw):
    body = dict(network="net", model="fp", start=0, end=10, addrs=["/ip4/127.0.0.1/tcp/1"], free_tokens=100,
                load=0.5, version="0.1.0")
    body.update(kw)
    return body


def report(**kw):
    body = dict(network="net", request_id=b"r" * 16, model="fp", mode="g-trac", chain=["a", "b"],
                latency_ms=[10.0, 20.0], outcome="success", culprit=-1, tokens=5)
    body.update(kw)
    return body


def test_envelope_round_trip():
    env = encode_envelope(ALICE, "heartbeat", hb(), seq=7, ts=NOW)
    back = decode_envelope(env.raw)
    assert (back.kind, back.sender, back.seq, back.ts, back.body) == ("heartbeat", ALICE.public, 7, NOW, hb())
    assert back.signature_ok()
    assert back.sender_id == ALICE.peer_id
    Verifier().check(back, NOW)


def _mutate(raw: bytes, **changes) -> bytes:
    obj = msgpack.unpackb(raw, raw=False)
    for k, v in changes.items():
        obj[k] = v
    return msgpack.packb(obj, use_bin_type=True)


@pytest.mark.parametrize("field,value", [
    ("body", hb(load=0.6)),
    ("sig", bytes(64)),
    ("from", MALLORY.public),
    ("seq", 8),
    ("ts", NOW + 1),
    ("kind", "trust_report"),
])
def test_tampering_is_rejected(field, value):
    env = encode_envelope(ALICE, "heartbeat", hb(), seq=7, ts=NOW)
    v = Verifier()
    assert v.admit(_mutate(env.raw, **{field: value}), NOW) is None
    assert sum(v.dropped.values()) == 1
    assert v.dropped["bad_signature"] + v.dropped["malformed"] == 1


def test_replay_and_window():
    s = Signer(ALICE, clock=lambda: NOW)
    v = Verifier(window=4)
    envs = [s.sign("heartbeat", hb()) for _ in range(10)]
    assert v.admit(envs[5].raw, NOW)
    assert v.admit(envs[5].raw, NOW) is None and v.dropped["replay"] == 1
    assert v.admit(envs[4].raw, NOW)  # out of order but inside the window: fine
    assert v.admit(envs[0].raw, NOW) is None and v.dropped["replay"] == 2  # older than the window
    assert v.admit(envs[9].raw, NOW)


def test_stale_and_future_timestamps_rejected():
    v = Verifier(max_skew_s=30)
    old = encode_envelope(ALICE, "heartbeat", hb(), seq=1, ts=NOW - 31)
    future = encode_envelope(ALICE, "heartbeat", hb(), seq=2, ts=NOW + 31)
    assert v.admit(old.raw, NOW) is None and v.admit(future.raw, NOW) is None
    assert v.dropped["clock_skew"] == 2


def test_forged_message_does_not_poison_replay_state():
    env = encode_envelope(ALICE, "heartbeat", hb(), seq=5, ts=NOW)
    v = Verifier()
    assert v.admit(_mutate(env.raw, sig=bytes(64)), NOW) is None
    assert v.admit(env.raw, NOW) is not None


def test_signer_seqs_rise_and_timestamps_never_go_back_even_when_the_clock_does():
    clock = iter([NOW] * 50 + [NOW - 3600.0] * 25 + [NOW + 5.0] * 25)  # frozen, stepped back, forward
    s = Signer(ALICE, clock=lambda: next(clock))
    envs = [s.sign("heartbeat", hb()) for _ in range(100)]
    seqs, tss = [e.seq for e in envs], [e.ts for e in envs]
    assert seqs == sorted(set(seqs)) and tss == sorted(tss)  # seq order is ts order (ledger checkpoints)
    assert tss[60] == NOW and tss[-1] == NOW + 5.0


def test_untrusted_sender_dropped():
    v = Verifier(allowed_senders={MALLORY.public})
    assert v.admit(encode_envelope(ALICE, "heartbeat", hb(), 1, NOW).raw, NOW) is None
    assert v.dropped["untrusted_sender"] == 1


def test_oversize_dropped_and_counted():
    v = Verifier()
    env = encode_envelope(ALICE, "heartbeat", hb(), 1, NOW)
    assert v.admit(_mutate(env.raw, body=hb(name="n" * 10_000)), NOW) is None
    assert v.admit(b"\xc6" + (1 << 30).to_bytes(4, "big"), NOW) is None  # bin32 claiming 1 GiB
    assert v.dropped["malformed"] == 1
    assert v.dropped["oversize"] == 1
    with pytest.raises(DecodeError, match="exceeds the cap"):
        encode_envelope(ALICE, "heartbeat", hb(addrs=["x" * 250] * 16, name="n"), 1, NOW)


@pytest.mark.parametrize("body,field", [
    (hb(start="0"), "body.start"),
    (hb(end=0), "body.end"),
    (hb(start=5, end=5), "body.end"),
    (hb(addrs=["a"] * 17), "body.addrs"),
    (hb(addrs=[1]), "body.addrs[0]"),
    (hb(load=float("nan")), "body.load"),
    (hb(free_tokens=-1), "body.free_tokens"),
    (hb(network=""), "body.network"),
    (hb(extra=1), "body.extra"),
    ({k: v for k, v in hb().items() if k != "model"}, "body.model"),
    (hb(load=True), "body.load"),
])
def test_heartbeat_schema_violation_names_field(body, field):
    raw = msgpack.packb({"v": 1, "kind": "heartbeat", "from": ALICE.public, "seq": 1, "ts": NOW, "body": body,
                         "sig": bytes(64)}, use_bin_type=True)
    with pytest.raises(DecodeError) as ei:
        decode_envelope(raw)
    assert ei.value.field == field


@pytest.mark.parametrize("body,field", [
    (report(mode="fastest"), "body.mode"),
    (report(chain=[]), "body.chain"),
    (report(latency_ms=[1.0, 2.0, 3.0]), "body.latency_ms"),
    (report(latency_ms=[-1.0, 2.0]), "body.latency_ms[0]"),
    (report(outcome="failure", culprit=2), "body.culprit"),
    (report(culprit=0), "body.culprit"),
    (report(request_id=b"short"), "body.request_id"),
    # a spot check's wrong_output is admitted only with its evidence
    (report(outcome="wrong_output", chain=["a", "b", "c"], latency_ms=[], culprit=0), "body.evidence"),
    (report(outcome="wrong_output", chain=["a", "b"], latency_ms=[], culprit=0,
            evidence={"input": b"i" * 32, "outputs": [b"x" * 32, b"y" * 32]}), "body.evidence.outputs"),
    (report(outcome="wrong_output", chain=["a", "b", "a"], latency_ms=[], culprit=0,
            evidence={"input": b"i" * 32, "outputs": [b"x" * 32, b"y" * 32, b"y" * 32]}), "body.chain"),
    (report(outcome="wrong_output", chain=["a", "b", "c"], latency_ms=[], culprit=1,
            evidence={"input": b"i" * 32, "outputs": [b"x" * 32, b"y" * 32, b"y" * 32]}), "body.chain"),
    (report(outcome="wrong_output", chain=["a", "b", "c"], latency_ms=[], culprit=0,
            evidence={"input": b"i" * 32, "outputs": [b"y" * 32, b"y" * 32, b"y" * 32]}), "body.evidence"),
    (report(evidence={"input": b"i" * 32, "outputs": [b"x" * 32, b"y" * 32, b"y" * 32]}), "body.evidence"),
])
def test_report_schema_violation_names_field(body, field):
    with pytest.raises(DecodeError) as ei:
        encode_envelope(ALICE, "trust_report", body, 1, NOW)
    assert ei.value.field == field


def test_a_wrong_output_report_with_evidence_is_accepted():
    ev = {"input": b"i" * 32, "outputs": [b"x" * 32, b"y" * 32, b"z" * 32]}  # witness and arbiter may differ
    env = encode_envelope(ALICE, "trust_report", report(outcome="wrong_output", chain=["a", "b", "c"], latency_ms=[],
                                                        culprit=0, evidence=ev), 1, NOW)
    assert decode_envelope(env.raw).body["evidence"]["outputs"][0] == b"x" * 32


@pytest.mark.parametrize("outer,field", [
    ({"v": 4}, "envelope.v"),  # outside the range this build reads (wire.versions.SPEAKS)
    ({"v": 0}, "envelope.v"),
    ({"kind": "bogus"}, "envelope.kind"),
    ({"from": b"x" * 31}, "envelope.from"),
    ({"seq": -1}, "envelope.seq"),
    ({"sig": b"s"}, "envelope.sig"),
])
def test_outer_schema_violation_names_field(outer, field):
    env = encode_envelope(ALICE, "heartbeat", hb(), 1, NOW)
    with pytest.raises(DecodeError) as ei:
        decode_envelope(_mutate(env.raw, **outer))
    assert ei.value.field == field


def test_ext_types_refused():
    raw = msgpack.packb({"v": msgpack.ExtType(5, b"x")}, use_bin_type=True)
    with pytest.raises(DecodeError, match="ext type"):
        decode_envelope(raw)


# ------------------------------------------------------------------ fuzzing


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=512))
def test_fuzz_envelope_decoder_on_arbitrary_bytes(data):
    for decode in (decode_envelope, decode_frame):
        try:
            decode(data)
        except DecodeError:
            pass


VALID = [encode_envelope(ALICE, "heartbeat", hb(), 1, NOW).raw,
         encode_envelope(ALICE, "trust_report", report(), 2, NOW).raw]


@settings(max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1,
                                        max_size=6), st.integers(0, 20), st.booleans())
def test_fuzz_mutated_valid_envelopes(raw, flips, cut, insert):
    b = bytearray(raw)
    for pos, val in flips:
        if insert:
            b.insert(pos % (len(b) + 1), val)
        else:
            b[pos % len(b)] = val
    if cut:
        b = b[:-cut]
    v = Verifier(max_skew_s=1e12)
    try:
        env = decode_envelope(bytes(b))
        v.check(env, NOW)
    except (DecodeError, Dropped):
        pass


# ------------------------------------------------------------------ tensors


@pytest.mark.parametrize("dtype,itemsize", [("float32", 4), ("float16", 2), ("bfloat16", 2), ("int64", 8),
                                             ("int32", 4)])
def test_tensor_round_trip_per_dtype(dtype, itemsize):
    data = bytes(range(256))[: 2 * 3 * itemsize]
    frame = encode_frame("result", {"session": b"s" * 16, "cached": 1, "hidden": encode_tensor(dtype, (2, 3), data),
                                    "compute_ms": 1.0})
    kind, body = decode_frame(frame)
    t = body["hidden"]
    assert (kind, t.dtype, t.shape, bytes(t.data)) == ("result", dtype, (2, 3), data)
    assert t.data.readonly


def test_tensor_decode_is_zero_copy():
    buf = b"\x01" * 64
    t = decode_tensor({"dtype": "float32", "shape": [4, 4], "data": buf})
    assert t.data.obj is buf  # a view on the received bytes, not a copy


@pytest.mark.parametrize("obj,field", [
    ({"dtype": "float64", "shape": [1], "data": b"\0" * 8}, "t.dtype"),
    ({"dtype": "object", "shape": [1], "data": b"\0" * 8}, "t.dtype"),
    ({"dtype": "float32", "shape": [3], "data": b"\0" * 8}, "t.data"),
    ({"dtype": "float32", "shape": [-2, -2], "data": b"\0" * 16}, "t.shape[0]"),
    ({"dtype": "float32", "shape": [1 << 20, 1 << 20], "data": b""}, "t.shape"),
    ({"dtype": "float32", "shape": [1] * 9, "data": b"\0" * 4}, "t.shape"),
    ({"dtype": "float32", "shape": [1], "data": "abcd"}, "t.data"),
    ({"dtype": "float32", "shape": [1]}, "t"),
])
def test_tensor_rejections(obj, field):
    with pytest.raises(DecodeError) as ei:
        decode_tensor(obj, path="t")
    assert ei.value.field == field


def test_tensor_element_cap_in_step_frames():
    big = encode_tensor("float32", (1, 1 << 18 | 1), b"\0" * 4 * ((1 << 18) + 1))
    raw = msgpack.packb({"v": 1, "kind": "step", "body": {"session": b"s" * 16, "pos": 0, "hidden": big}},
                        use_bin_type=True)
    with pytest.raises(DecodeError) as ei:
        decode_frame(raw)
    assert ei.value.field in ("frame", "body.hidden.shape")


def test_package_never_uses_pickle():
    import pathlib

    root = pathlib.Path(__file__).parent.parent / "gtracd"
    for p in root.rglob("*.py"):
        text = p.read_text()
        assert "import pickle" not in text and "torch.load(" not in text, p


def test_report_batches_round_trip_within_caps_and_refuse_malformed_batches():
    from gtracd.wire.batch import BATCH_REPORTS, batch_items, report_batches
    from gtracd.wire.codec import packb

    s = Signer(ALICE, clock=lambda: NOW)
    raws = [s.sign("heartbeat", hb()).raw for _ in range(150)]
    msgs = report_batches(raws)
    assert len(msgs) == 3 and [x for m in msgs for x in batch_items(m)] == raws  # order kept, 64 + 64 + 22
    assert batch_items(raws[0]) == [raws[0]]  # a single envelope, as before batches
    assert batch_items(packb({"v": 3, "reports": raws[:1], "added_in_v2": 1})) == raws[:1]  # the next version
    for bad in ({"v": 4, "reports": raws[:1]}, {"v": 1, "reports": []}, {"v": 1, "reports": ["text"]},
                {"v": 1, "reports": raws[:1], "more": 1}, {"v": 1, "reports": raws[:1] * (BATCH_REPORTS + 1)}):
        with pytest.raises(DecodeError):
            batch_items(packb(bad))
    with pytest.raises(DecodeError):
        batch_items(b"\xc1")
