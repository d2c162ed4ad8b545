"""What one request owes the trust ledger (seeker/repairs.py), driven through arbitrary event sequences: every
blamed failure costs exactly the peer it faults, once; an unblamed one costs nobody; the reports are
well-formed whatever happened."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gtracd.seeker.blame import Verdict
from gtracd.seeker.repairs import Accounts

PEERS = [f"P{i}" for i in range(8)]
BLAMED = st.sampled_from([Verdict("timeout", True), Verdict("transport", True), Verdict("protocol", True),
                          Verdict("error", True)])
UNBLAMED = st.sampled_from([Verdict("refusal", False, 2.0), Verdict("eviction", False), Verdict("drained", False),
                            Verdict("seeker", False)])
VERDICT = st.one_of(BLAMED, UNBLAMED)
SPAN = st.sampled_from([(0, 10), (10, 20), (20, 30)])

EVENT = st.one_of(
    st.tuples(st.just("hop"), st.sampled_from(PEERS), SPAN, VERDICT, st.sampled_from(PEERS), st.integers(0, 2)),
    st.tuples(st.just("replacement"), st.sampled_from(PEERS), VERDICT, st.booleans()),
    st.tuples(st.just("convicted"), st.permutations(PEERS).map(lambda p: p[:3])),
    st.tuples(st.just("avoid"), st.sets(st.sampled_from(PEERS), max_size=2)),
)


def play(acc: Accounts, events) -> None:
    for ev in events:
        if ev[0] == "hop":
            _, peer, span, v, rep, hop = ev
            acc.hop_failed(peer, span, v)
            if acc.may_repair():
                acc.attempt()
                chain = ["C0", "C1", "C2"]
                chain[hop] = peer
                acc.repaired(hop, peer, rep, v, "why", 1.0, chain, [5.0] * hop)
        elif ev[0] == "replacement":
            _, peer, v, may_wait = ev
            acc.attempt()
            acc.replacement_failed(peer, v, "why", may_wait)
        elif ev[0] == "convicted":
            liar, witness, arbiter = ev[1]
            acc.convicted(liar, witness, arbiter, (b"i", b"o"))
        else:
            acc.avoid(ev[1])


@settings(max_examples=400)
@given(events=st.lists(EVENT, max_size=12), max_repairs=st.sampled_from([None, 1, 2]),
       success=st.booleans(), end_blamed=st.booleans(), culprit=st.sampled_from([None, "C1", "P7", "Z"]),
       lats=st.integers(0, 3))
def test_each_blamed_failure_costs_its_peer_once_and_an_unblamed_one_nobody(events, max_repairs, success,
                                                                           end_blamed, culprit, lats):
    acc = Accounts(max_repairs)
    play(acc, events)
    if not success:
        acc.ended(end_blamed)
    chain = ["C0", "C1", "C2"]
    reports = acc.reports({"network": "n"}, chain, [7.0] * lats, success, culprit)

    if max_repairs is not None:
        assert len(acc.repair_log) <= max_repairs
    blamed_repairs = [r for r in acc.repair_log if r["blamed"]]
    failures = [r for r in reports if r["outcome"] == "failure"]
    for r in reports:
        assert r["network"] == "n"
        assert len(r["latency_ms"]) <= len(r["chain"])
        assert r["culprit"] == -1 or 0 <= r["culprit"] < len(r["chain"])
    # every blamed repair: one failure report naming the failed hop, in the chain as it failed
    for rep in blamed_repairs:
        assert any(f["chain"] == rep["chain"] and f["chain"][f["culprit"]] == rep["failed"] for f in failures)
    # nobody unblamed is ever the culprit of a report this request owes for its repairs
    named = [f["chain"][f["culprit"]] for f in failures if f["culprit"] >= 0]
    may_name = ({r["failed"] for r in blamed_repairs}
                | {f["peer"] for f in acc.replacement_failures if f["blamed"]}
                | ({culprit} if not success and end_blamed and culprit is not None else set()))
    assert set(named) <= may_name
    assert len([f for f in failures if f["chain"] in [r["chain"] for r in blamed_repairs]]) >= len(blamed_repairs)
    # the final outcome
    final = [r for r in reports if r["outcome"] == "success"]
    assert len(final) == (1 if success and lats == len(chain) else 0)
    if not success and not end_blamed:
        assert len(failures) == len(blamed_repairs) + sum(f["blamed"] for f in acc.replacement_failures)
    if not success and end_blamed and culprit not in (None, *chain):
        assert failures[-1]["chain"] == [culprit]  # a culprit outside the chain alone, never the hops around it
    convictions = [r for r in reports if r["outcome"] == "wrong_output"]
    assert len(convictions) == len(acc.wrong_outputs)
    assert all(c["evidence"] for c in convictions)


@settings(max_examples=300)
@given(events=st.lists(EVENT, max_size=12), success=st.booleans())
def test_the_view_counts_a_success_only_without_blame_and_a_new_request_owes_nothing(events, success):
    acc = Accounts()
    play(acc, events)
    outs = acc.outcomes(["C0", "C1", "C2"], success, None)
    succeeded = [o for o in outs if o[1]]
    assert bool(succeeded) == (success and not any(r["blamed"] for r in acc.repair_log))
    for r in acc.repair_log:  # each blamed repair costs its failed peer in the view too
        if r["blamed"]:
            assert any(not ok and who == r["failed"] for _, ok, who in outs)
    unblamed_only = {r["failed"] for r in acc.repair_log if not r["blamed"]} - {
        r["failed"] for r in acc.repair_log if r["blamed"]} - {w["chain"][0] for w in acc.wrong_outputs} - {
        f["peer"] for f in acc.replacement_failures if f["blamed"]}
    assert not any(who in unblamed_only for _, ok, who in outs if not ok)  # nobody pays for what is not theirs
    failed_before = set(acc.failed)
    acc.new_request()
    assert acc.reports({}, ["C0"], [1.0], True, None) == [{"chain": ["C0"], "latency_ms": [1.0],
                                                           "outcome": "success", "culprit": -1}]
    assert acc.failed == failed_before  # still routed around in the same generation


@given(events=st.lists(EVENT, max_size=12))
def test_only_an_excused_peer_that_moved_may_serve_again(events):
    acc = Accounts()
    play(acc, events)
    stayed = acc.excluded(lambda peer, span: False)
    assert stayed == acc.failed
    moved = acc.excluded(lambda peer, span: True)
    assert moved == {p for p in acc.failed if p not in acc.excused}
    convicted = {w["chain"][0] for w in acc.wrong_outputs}
    assert convicted <= acc.failed
