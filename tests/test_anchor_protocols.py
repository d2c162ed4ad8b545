"""The anchor's pure protocol pieces: the ledger stream (protocols/ledgerstream.py) and the announce queue
(anchor/announce.py), under arbitrary frame and event sequences."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gtracd.anchor.announce import AnnounceQueue
from gtracd.ledger.crdt import Ledger
from gtracd.ledger.report import Report
from gtracd.protocols.ledgerstream import LedgerStream, Refuse, Reply, Submit
from gtracd.protocols.ledgersync import Responder

FRAME = st.one_of(
    st.tuples(st.just("submit"), st.fixed_dictionaries({"network": st.sampled_from(["net", "other"]),
                                                        "reports": st.lists(st.binary(max_size=4), max_size=3)})),
    st.tuples(st.just("sync_digest"), st.fixed_dictionaries({"network": st.sampled_from(["net", "other"]),
                                                             "heads": st.just({}), "last": st.booleans(),
                                                             "checkpoint": st.none()})),
    st.tuples(st.just("sync_want"), st.fixed_dictionaries({"runs": st.just({}), "last": st.booleans()})),
    st.tuples(st.sampled_from(["reports", "ack", "step", "heartbeat"]), st.just({"network": "net"})),
    st.tuples(st.just("<malformed>"), st.just({})),
)


@given(frames=st.lists(FRAME, max_size=12))
def test_every_frame_gets_an_answer_and_a_refusal_closes_the_stream(frames):
    ls = LedgerStream("net", Responder(Ledger()))
    for kind, body in frames:
        was_closed = ls.closed
        ev = ls.malformed("cannot decode") if kind == "<malformed>" else ls.receive(kind, body)
        if was_closed:
            assert isinstance(ev, Refuse)
            continue
        if kind in ("submit", "sync_digest") and body["network"] != "net":
            assert isinstance(ev, Refuse) and ev.code == "wrong_network"
        elif kind == "submit":
            assert isinstance(ev, Submit) and ev.reports == body["reports"]
        elif kind in ("reports", "ack", "step", "heartbeat", "<malformed>"):
            assert isinstance(ev, Refuse) and ev.code == "bad_frame"
        else:
            assert isinstance(ev, (Reply, Refuse))
        if isinstance(ev, Refuse):
            assert ls.closed and ev.frame[0] == "error" and len(ev.frame[1]["message"]) <= 2000
            assert ev.drop in (None, "malformed", "oversize", "sync_protocol")


def report(i: int) -> Report:
    return Report(b"r" * 32, i, float(i), ("a",), (1.0,), "success")


EVENT = st.one_of(
    st.tuples(st.just("schedule"), st.lists(st.integers(0, 9), max_size=4), st.sampled_from([0.0, 0.05, 0.4])),
    st.tuples(st.just("hurry"), st.integers(0, 9)),
    st.tuples(st.just("covered"), st.integers(0, 9)),
    st.tuples(st.just("tick"), st.floats(0, 1)),
)


@given(events=st.lists(EVENT, max_size=40))
def test_a_report_is_announced_once_per_scheduling_never_early_and_never_after_another_delta_carried_it(events):
    q, now, announced, scheduled_at, covered = AnnounceQueue(), 0.0, [], {}, set()
    for ev in events:
        if ev[0] == "schedule":
            rs = [report(i) for i in ev[1]]
            q.schedule(rs, now, ev[2])
            for r in rs:
                scheduled_at.setdefault(r.seq, now + ev[2])  # the earlier time stands
                covered.discard(r.seq)
        elif ev[0] == "hurry":
            if q.hurry((b"r" * 32, ev[1])):
                scheduled_at[ev[1]] = float("-inf")
        elif ev[0] == "covered":
            q.covered((b"r" * 32, ev[1]))
            covered.add(ev[1])
            scheduled_at.pop(ev[1], None)
        else:
            now += ev[1]
        for r in q.due(now):
            assert scheduled_at.pop(r.seq) <= now  # never before its time
            announced.append(r.seq)
            assert r.seq not in covered  # a delta carried it since it was scheduled: never announced
        nxt = q.next_due()
        assert nxt is None or nxt > now
    assert len(q) == len(scheduled_at)
