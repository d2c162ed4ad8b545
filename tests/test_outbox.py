"""The outbox (control/outbox.py): a report leaves only by an anchor's answer about that very report."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gtracd.control.outbox import DONE, RETRY, Outbox

RESULT = st.sampled_from([*DONE, *RETRY, "stale", "unknown_peer", "implausible"])
ROUND = st.tuples(st.lists(RESULT, max_size=12), st.booleans(), st.integers(0, 3))  # results, failed, new reports


@given(rounds=st.lists(ROUND, max_size=15))
def test_no_report_is_lost_and_none_is_kept_forever_after_a_final_answer(rounds):
    box, seq, gone = Outbox(), 0, {}
    for results, failed, new in rounds:
        for _ in range(new):
            box.add((b"me", seq), b"raw%d" % seq)
            seq += 1
        sent = box.batch()
        assert [k for k, _ in sent] == sorted(k for k, _ in sent)  # oldest first
        if failed:  # the anchor was down, the stream broke: nothing answered, nothing leaves
            continue
        before = box.keys()
        ans = box.answered(sent, results)
        for (key, _), res in zip(sent, results, strict=False):
            if res in DONE or res not in RETRY:
                assert key not in box
                gone[key] = res
            else:
                assert key in box  # asked to retry: still held
        for key, _ in sent[len(results):]:
            assert key in box  # a short answer keeps what it did not answer for
        assert ans.acked + sum(ans.refused.values()) == len(before - box.keys())
        assert ans.changed == bool(before - box.keys())
    held = box.keys()
    assert held | set(gone) == {(b"me", i) for i in range(seq)} and not held & set(gone)
    assert box.raws() == [b"raw%d" % k[1] for k in sorted(held)]


def test_an_answer_about_reports_already_gone_changes_nothing():
    box = Outbox({(b"r", 1): b"a"})
    sent = box.batch()
    assert box.answered(sent, ["admitted"]).acked == 1
    again = box.answered(sent, ["stale"])
    assert not again.changed and len(box) == 0
