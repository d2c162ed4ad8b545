"""Ledger anti-entropy as a pure state machine (gtracd/protocols/ledgersync.py), in-process: seq runs, two replicas with
arbitrary report sets converging under arbitrary message loss and duplication, a reporter with 100,000
reports, and malformed or out-of-place frames. Every frame goes through the real wire codec and its caps."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtracd.ledger import Ledger, Report
from gtracd.protocols.ledgersync import (
    MAX_WANT,
    Initiator,
    ProtocolError,
    Responder,
    runs_count,
    runs_head,
    runs_minus,
    runs_union,
    to_runs,
)
from gtracd.wire.frames import decode_frame, encode_frame

REPORTERS = [bytes([i + 1]) * 32 for i in range(4)]
SEQS = st.lists(st.integers(0, 300), max_size=60, unique=True).map(sorted)


def wire(kind: str, body: dict) -> tuple[str, dict]:
    """Through the codec both ways: schema and frame caps hold for every page."""
    return decode_frame(encode_frame(kind, body, check=True))


def rep(reporter: bytes, seq: int, variant: int = 0) -> Report:
    r = Report(reporter, seq, float(seq) + variant * 0.5, ("w1",), (10.0 + variant,), "success")
    return Report(r.reporter, r.seq, r.ts, r.chain, r.latency_ms, r.outcome, raw=REGISTRY.add(r))


class Registry:
    """raw bytes <-> Report for unsigned test reports (a driver verifies real envelopes instead)."""

    def __init__(self):
        self.by_raw: dict[bytes, Report] = {}

    def add(self, r: Report) -> bytes:
        raw = r.reporter[:1] + r.seq.to_bytes(8, "big") + repr(r.ts).encode() + repr(r.latency_ms).encode()
        self.by_raw[raw] = r
        return raw

    def get(self, raw: bytes) -> Report:
        r = self.by_raw[bytes(raw)]
        return Report(r.reporter, r.seq, r.ts, r.chain, r.latency_ms, r.outcome, raw=bytes(raw))


REGISTRY = Registry()


@settings(max_examples=300, deadline=None)
@given(SEQS, SEQS, st.integers(0, 400))
def test_runs_are_sets(a, b, n):
    ra, rb = [tuple(r) for r in to_runs(a)], [tuple(r) for r in to_runs(b)]
    assert runs_count(ra) == len(a)
    assert {s for x, y in runs_minus(ra, rb) for s in range(x, y)} == set(a) - set(b)
    assert [s for x, y in runs_head(ra, n) for s in range(x, y)] == a[:n]
    assert [s for x, y in runs_union(ra, rb) for s in range(x, y)] == sorted(set(a) | set(b))


def one_round(a: Ledger, b: Ledger, fate, push: bool = True, keyring=(), proof=(), seen=None) -> bool:
    """One anti-entropy session, a initiating, b responding (offering its checkpoint with `proof`); `fate(i)`
    -> 0 deliver, 1 drop, 2 duplicate for the i-th frame. True if the session completed. `seen` collects the
    initiators."""
    ini, res = Initiator(a, "net", keyring=keyring), Responder(b, proof=list(proof))
    if seen is not None:
        seen.append(ini)
    to_res = list(ini.start().send)
    to_ini: list = []
    i = 0
    while to_res or to_ini:
        q, machine = (to_res, res) if to_res else (to_ini, ini)
        kind, body = wire(*q.pop(0))
        f = fate(i)
        i += 1
        for _ in range({0: 1, 1: 0, 2: 2}[f]):
            try:
                step = machine.receive(kind, body)
            except ProtocolError:  # a duplicate after the session moved on: the driver would close the stream
                return False
            if step.adopt is not None:
                a.adopt(step.adopt[0])
            for r in step.ingest:
                a.add(REGISTRY.get(r))
            (to_ini if machine is res else to_res).extend(step.send)
    if ini.state != "done":
        return False  # a frame was lost: the session stalls until the driver's deadline
    if push:
        for r in ini.give:
            b.add(r)
    return True


UNIVERSE = st.lists(st.tuples(st.sampled_from(REPORTERS), st.integers(0, 40), st.integers(0, 1)), max_size=60)


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(UNIVERSE, UNIVERSE, st.lists(st.integers(0, 2), max_size=40), st.integers(0, 6))
def test_two_replicas_converge_under_any_loss_and_duplication(xs, ys, fates, lossy_rounds):
    """Arbitrary sets (including equivocations: one key, two contents) on each side, then lossy rounds in both
    directions, then clean rounds: both hold the union, equivocations resolved alike."""
    a, b = Ledger(rep(r, s, v) for r, s, v in xs), Ledger(rep(r, s, v) for r, s, v in ys)
    union = a.merge(b)
    it = iter(fates)
    for k in range(lossy_rounds):
        x, y = (a, b) if k % 2 == 0 else (b, a)
        one_round(x, y, lambda i: next(it, 0))
        for r in x.reports() + y.reports():  # a lossy round never invents a report
            assert union.get(r.reporter, r.seq) is not None
    for _ in range(4):
        assert one_round(a, b, lambda i: 0) and one_round(b, a, lambda i: 0)
        if a == b:
            break
    assert a == b == union and a.heads() == union.heads()


@pytest.mark.timeout(120)
def test_a_reporter_with_100000_reports_syncs_in_bounded_pages():
    """The old protocol listed every seq in one frame (65,536 at most): ~18 h of one report a second broke
    anti-entropy for good. Runs and pages: 100,000 reports arrive MAX_WANT per session."""
    r0 = REPORTERS[0]
    full = Ledger(rep(r0, s) for s in range(100_000))
    fresh = Ledger()
    sessions: list[Initiator] = []
    while fresh != full:
        assert one_round(fresh, full, lambda i: 0, push=False, seen=sessions)
        assert len(sessions) <= 100_000 // MAX_WANT + 1
    assert len(fresh) == 100_000 and fresh.heads() == full.heads()
    # each session asked for all it may: a driver goes on at once instead of waiting a round, until one that
    # finds less to do
    assert all(s.capped for s in sessions)
    assert one_round(fresh, full, lambda i: 0, push=False, seen=sessions) and not sessions[-1].capped
    # a gap in the middle travels as two runs, not 100,000 numbers
    holey = Ledger(rep(r0, s) for s in range(100_000) if not 40_000 <= s < 40_010)
    ini = Initiator(holey, "net")
    res = Responder(full)
    step = res.receive(*wire(*ini.start().send[0]))
    (kind, body), = step.send
    assert kind == "sync_diff" and body["runs"] == {r0.hex(): [[0, 100_000]]}
    want = ini.receive(*wire(kind, body)).send
    assert want == [("sync_want", {"runs": {r0.hex(): [[40_000, 40_010]]}, "last": True})]


def test_malformed_and_out_of_place_frames_are_protocol_errors():
    led = Ledger([rep(REPORTERS[0], s) for s in range(5)])
    with pytest.raises(ProtocolError):  # a want before any digest
        Responder(led).receive("sync_want", {"runs": {}, "last": True})
    for runs in ([[5, 3]], [[0, 4], [2, 6]], [[3, 4], [0, 1]], [[1]], [["a", 2]]):
        res = Responder(led)
        res.receive("sync_digest", {"network": "n", "heads": {}, "last": True})
        with pytest.raises(ProtocolError):
            res.receive("sync_want", {"runs": {REPORTERS[0].hex(): runs}, "last": True})
    res = Responder(led)
    res.receive("sync_digest", {"network": "n", "heads": {}, "last": True})
    with pytest.raises(ProtocolError, match="wanted"):  # more than a session serves
        res.receive("sync_want", {"runs": {REPORTERS[0].hex(): [[0, MAX_WANT + 1]]}, "last": True})
    res = Responder(led)
    res.receive("sync_digest", {"network": "n", "heads": {}, "last": True})
    with pytest.raises(ProtocolError, match="reporter key"):
        res.receive("sync_want", {"runs": {"zz": [[0, 1]]}, "last": True})
    ini = Initiator(led, "n")
    ini.start()
    with pytest.raises(ProtocolError):
        ini.receive("reports", {"reports": [], "more": False})


def test_a_replica_with_a_checkpoint_never_asks_for_what_it_folded():
    from gtracd.ledger import RuleParams
    from gtracd.ledger.crdt import make_checkpoint

    rs = [rep(REPORTERS[0], s) for s in range(100)]  # ts = seq
    cp = make_checkpoint(None, rs, 50.0, RuleParams())
    a, b = Ledger(rs[:60], checkpoint=cp), Ledger(rs)  # b has not adopted it yet
    refused = a.below_checkpoint
    assert one_round(a, b, lambda i: 0, push=False)
    assert sorted(r.seq for r in a.reports()) == list(range(50, 100)) and a.below_checkpoint == refused


def test_a_fresh_replica_bootstraps_from_a_certified_checkpoint_and_refuses_an_uncertified_one():
    from gtracd.identity import Identity
    from gtracd.ledger import RuleParams, derive
    from gtracd.ledger.checkpoint import signed_body, verify_proof
    from gtracd.ledger.crdt import make_checkpoint
    from gtracd.wire.envelope import Signer

    anchors = [Identity.generate() for _ in range(3)]
    keyring = {a.peer_id for a in anchors}
    rs = [rep(r, s) for r in REPORTERS[:2] for s in range(300)]
    cp = make_checkpoint(None, rs, 200.0, RuleParams())
    full = Ledger(rs, checkpoint=cp)
    sig = [Signer(a).sign("ledger_checkpoint", signed_body(cp, "net")).raw for a in anchors]
    fresh = Ledger()
    assert one_round(fresh, full, lambda i: 0, keyring=keyring, proof=sig[:2])  # a majority of three
    assert fresh.checkpoint == cp and fresh == full and derive(fresh) == derive(Ledger(rs))
    forged = Signer(anchors[2]).sign("ledger_checkpoint", {**signed_body(cp, "net"), "digest": bytes(32)}).raw
    strangers = {Identity.generate().peer_id for _ in range(3)}
    for proof, ring, why in ((sig[:1], keyring, "1 keyring anchors signed it, 2 needed"),
                             (sig[:2], strangers, "0 keyring anchors"), ([sig[0], forged], keyring, "another")):
        assert why in verify_proof(cp.id, proof, ring, "net")
        led = Ledger()
        assert not one_round(led, full, lambda i: 0, keyring=ring, proof=proof)  # the session is refused
        assert led.checkpoint is None and len(led) == 0
        ini = Initiator(Ledger(), "net", keyring=ring)
        offer = Responder(full, proof=proof).receive(*wire(*ini.start().send[0])).send[0]
        with pytest.raises(ProtocolError, match="not certified"):
            ini.receive(*wire(*offer))


def test_a_peer_cannot_make_a_responder_do_unbounded_work():
    """An independent review's findings: replayed pages were looked up linearly, empty want entries and
    arbitrary head keys were collected up to a million, an uncertified checkpoint was buffered whole."""
    led = Ledger([rep(REPORTERS[0], s) for s in range(50)])
    key = REPORTERS[0].hex()
    res = Responder(led)
    res.receive("sync_digest", {"network": "n", "heads": {}, "last": True})
    res.receive("sync_want", {"runs": {key: [[0, 10]]}, "last": False})
    with pytest.raises(ProtocolError, match="continue in order"):  # the same page again
        res.receive("sync_want", {"runs": {key: [[0, 10]]}, "last": False})
    res = Responder(led)
    res.receive("sync_digest", {"network": "n", "heads": {}, "last": True})
    with pytest.raises(ProtocolError, match="empty"):
        res.receive("sync_want", {"runs": {REPORTERS[1].hex(): []}, "last": False})
    with pytest.raises(ProtocolError, match="reporter key"):
        Responder(led).receive("sync_digest", {"network": "n", "heads": {"x" * 64: {"n": 1, "h": bytes(16)}},
                                               "last": False})
    res = Responder(led)
    junk = {bytes([i % 256, i // 256]).hex() * 16: {"n": 1, "h": bytes(16)} for i in range(2048)}
    for k in range(10):  # 20,480 unknown reporters named to a replica that knows one: kept within its bound
        res.receive("sync_digest", {"network": "n", "heads": {f"{k:02x}" + h[2:]: v for h, v in junk.items()},
                                    "last": False})
    assert len(res._heads) <= res.max_reporters and res.ignored > 0
    # ... and the session still works for what both hold (issue 23, item 7: it used to fail every round)
    step = res.receive("sync_digest", {"network": "n", "heads": {key: {"n": 0, "h": bytes(16)}}, "last": True})
    assert any(k == "sync_diff" and key in b["runs"] for k, b in step.send)


def test_an_offered_checkpoint_is_checked_before_its_state_is_kept():
    from gtracd.identity import Identity
    from gtracd.ledger import RuleParams
    from gtracd.ledger.checkpoint import signed_body
    from gtracd.ledger.crdt import make_checkpoint
    from gtracd.wire.envelope import Signer

    anchors = [Identity.generate() for _ in range(3)]
    keyring = {a.peer_id for a in anchors}
    cp = make_checkpoint(None, [rep(REPORTERS[0], s) for s in range(20)], 10.0, RuleParams())
    sig = [Signer(a).sign("ledger_checkpoint", signed_body(cp, "net")).raw for a in anchors[:2]]
    page = {"boundary": cp.boundary, "digest": cp.digest, "state_hash": cp.state_hash, "count": cp.count,
            "state": cp.state, "last": True}
    for body, why in (({**page, "last": False}, "not certified"),  # no proof on the first page
                      ({**page, "proof": sig, "count": 10**18}, "not certified"),  # a count nobody signed
                      ({**page, "proof": sig, "state": cp.state + b"x"}, "not the one its signatures name")):
        ini = Initiator(Ledger(), "net", keyring=keyring)
        ini.start()
        with pytest.raises(ProtocolError, match=why):
            ini.receive(*wire("sync_checkpoint", body))
    ini = Initiator(Ledger(), "net", keyring=keyring)
    ini.start()
    assert ini.receive(*wire("sync_checkpoint", {**page, "proof": sig})).adopt[0] == cp


def test_ledger_streams_price_every_request_and_never_limit_anchors():
    """Issue 23, item 8: a diff or a submission's bytes are paid for per peer and for all non-anchor peers together,
    before any work; over budget the asker waits a moment (Hold) or is told when to come back (busy); a peer
    over its own budget cools (its next streams wait); keyring anchors are never limited."""
    from gtracd.anchor.quota import Quota, QuotaParams
    from gtracd.protocols.ledgerstream import Hold, LedgerStream, Refuse

    q = Quota({"anchor"}, QuotaParams(session_every_s=10.0, sessions_per_s=5.0, report_bytes_per_s=10.0))
    now = 0.0
    built = []

    class Counting(Responder):
        def receive(self, kind, body):
            built.append(kind)
            return super().receive(kind, body)

    def stream(remote):
        return LedgerStream("n", Counting(Ledger()), lambda costs: q.ask_all(remote, costs, now))

    digest = {"network": "n", "heads": {}, "last": True}
    for _ in range(3):
        assert not isinstance(stream("p1").receive("sync_digest", digest), (Refuse, Hold))
    ev = stream("p1").receive("sync_digest", digest)  # burst of 3 spent: refused before any diff is built
    assert isinstance(ev, Refuse) and ev.code == "busy" and ev.retry_after_s > 5 and len(built) == 3
    assert q.cooling("p1", now) and not q.cooling("p2", now)
    for i in range(40):  # fresh peer ids: the shared bucket (burst 4 x 5/s) bounds them together
        ev = stream(f"sybil{i}").receive("sync_digest", digest)
    assert len(built) == 20 and isinstance(ev, Hold) and 0 < ev.seconds <= 1  # p1's three included; a moment
    assert all(not isinstance(stream("anchor").receive("sync_digest", digest), (Refuse, Hold)) for _ in range(50))
    assert not isinstance(stream("p2").receive("submit", {"network": "n", "reports": [b"x"] * 150}), (Refuse, Hold))
    ev = stream("p2").receive("submit", {"network": "n", "reports": [b"x"] * 150})  # burst 16 x 10 bytes/s
    assert isinstance(ev, Refuse) and ev.code == "busy"
    now = 100.0  # refilled
    assert not isinstance(stream("p1").receive("sync_digest", digest), (Refuse, Hold))
