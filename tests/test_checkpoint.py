"""Checkpoints keep the ledger a CRDT and the derivation bit-identical (gtracd/ledger/checkpoint.py): folding a
checkpoint's state and then the reports after its boundary gives exactly the floats of folding everything
from scratch, with ledger epochs and reporter standing on; merge stays commutative, associative and
idempotent with checkpoints on either side; adoption prunes and refuses what it folded."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtracd.errors import DecodeError
from gtracd.ledger import Derived, Fold, Ledger, RuleParams, derive
from gtracd.ledger.checkpoint import (
    Checkpoint,
    boundary_for,
    fold_from_state,
    fold_state,
    later,
)
from gtracd.ledger.crdt import make_checkpoint

from .strategies import MIXED, STANDING

PROP = settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
BOUNDARY = st.floats(0, 21000, allow_nan=False)
PARAMS = st.sampled_from([RuleParams(), STANDING, RuleParams(window_s=700.0, reporter_budget=0.1)])


def honest(rs):
    """The same reports as honest signers would number them: per reporter, seqs rise with timestamps
    (wire.envelope.Signer), equal timestamps in any order; twins (one seq, two contents) stay twins."""
    by: dict = {}
    for r in rs:
        by.setdefault(r.reporter, {}).setdefault(r.seq, []).append(r)
    out = []
    for per in by.values():
        ordered = sorted(per.items(), key=lambda kv: (min(r.ts for r in kv[1]), kv[0]))
        ts_floor = 0.0
        for seq, (_, twins) in enumerate(ordered):
            ts_floor = max(ts_floor, min(r.ts for r in twins))
            out += [dataclasses.replace(r, seq=seq, ts=ts_floor) for r in twins]  # twins share a ts
    return out


HONEST = MIXED.map(honest)


@PROP
@given(HONEST, BOUNDARY, BOUNDARY, PARAMS)
def test_derivation_is_bit_identical_across_checkpoint_boundaries(rs, b1, b2, p):
    b1, b2 = sorted((b1, b2))
    full = derive(Ledger(rs), p)
    cp1 = make_checkpoint(None, rs, b1, p)
    cp2 = make_checkpoint(cp1, rs, b2, p)  # a chain of checkpoints, each continuing the last
    for cp in (cp1, cp2):
        assert derive(Ledger(rs, checkpoint=cp), p) == full  # equal floats, not approximately
    inc = Ledger()  # incremental: reports arrive, then a checkpoint is adopted midway, then the rest
    d = Derived(inc, p)
    half = len(rs) // 2
    for r in rs[:half]:
        inc.add(r)
    d.current()
    inc.adopt(cp1)
    for r in reversed(rs[half:]):  # out of order, as a sync's pages come: refolds from the checkpoint's fold
        inc.add(r)
        d.current()
    assert (d.current().trust, d.current().latency) == full
    if d._base[0] is cp1:  # refolds started from copies of the checkpoint's fold, which they left as it was
        assert fold_state(d._base[1], cp1.boundary, cp1.upto) == cp1.state


def _ledger(rs, cp):
    return Ledger(rs, checkpoint=cp)


@PROP
@given(MIXED, MIXED, MIXED, BOUNDARY, BOUNDARY, st.integers(0, 2), st.integers(0, 2), st.integers(0, 2))
def test_merge_laws_hold_with_checkpoints(a, b, c, b1, b2, ia, ib, ic):
    a, b, c = honest(a + b + c)[:len(a)], honest(a + b + c)[len(a):len(a) + len(b)], honest(a + b + c)[len(a) + len(b):]
    universe = a + b + c
    b1, b2 = sorted((b1, b2))
    cp1 = make_checkpoint(None, universe, b1, RuleParams())
    cps = [None, cp1, make_checkpoint(cp1, universe, b2, RuleParams())]
    A, B, C = _ledger(a, cps[ia]), _ledger(b, cps[ib]), _ledger(c, cps[ic])
    assert A.merge(B) == B.merge(A)
    assert A.merge(B).merge(C) == A.merge(B.merge(C))
    assert A.merge(A) == A and A.merge(B).merge(B) == A.merge(B)
    # replicas that hold the universe's reports at or above the checkpoint derive what the universe does
    m = A.merge(B).merge(C).merge(_ledger(universe, None))
    assert derive(m) == derive(Ledger(universe)) and m.heads() == Ledger(universe, checkpoint=m.checkpoint).heads()


@PROP
@given(MIXED, BOUNDARY)
def test_adoption_prunes_below_the_boundary_and_refuses_what_it_folded(rs, b):
    cp = make_checkpoint(None, rs, b, RuleParams())
    led = Ledger(rs)
    assert led.adopt(cp) and not led.adopt(cp)  # once
    assert all(not cp.covers(r) and r.ts >= b for r in led.reports())
    assert led.heads() == Ledger([r for r in rs if not cp.covers(r)]).heads()
    for r in rs:
        if cp.covers(r):
            assert not led.add(r)
    assert led.below_checkpoint == sum(1 for r in rs if cp.covers(r))
    assert not led.adopt(make_checkpoint(None, rs, b / 2, RuleParams())) or b == 0  # never back


@PROP
@given(MIXED, MIXED, BOUNDARY, st.integers(0, 2), st.integers(0, 2))
def test_replicas_on_one_checkpoint_agree_whatever_their_reporters_signed(a, b, bd, ia, ib):
    """Reports whose seqs do not rise with their timestamps (twins of folded reports with a later ts, or a
    signer that breaks the rule) are refused alike by every replica on the checkpoint: merge laws hold and
    replicas holding the same reports derive the same trust."""
    cp = make_checkpoint(None, a + b, bd, RuleParams())
    cps = [None, cp]
    A, B = _ledger(a, cps[ia % 2]), _ledger(b, cps[ib % 2])
    assert A.merge(B) == B.merge(A) and A.merge(A) == A
    m1, m2 = A.merge(B).merge(_ledger([], cp)), _ledger(b + a, cp)
    assert m1 == m2 and derive(m1) == derive(m2)


def test_a_twin_of_a_folded_report_with_a_later_ts_is_refused_by_its_seq_watermark():
    from .strategies import R

    folded, twin = R(0, 5, ["a"], ts=100.0), R(0, 5, ["a"], "failure", 0, ts=900.0)
    cp = make_checkpoint(None, [folded, R(1, 7, ["a"], ts=950.0)], 500.0, RuleParams())
    assert cp.upto == {folded.reporter: 5}  # one number per reporter, whatever the history
    led = Ledger([], checkpoint=cp)
    assert not led.add(twin) and led.below_checkpoint == 1
    assert led.add(R(0, 6, ["a"], ts=900.0)) and led.add(R(1, 7, ["a"], ts=950.0))  # after it; not folded


def test_later_is_a_total_choice_and_states_are_checked():
    rs = []
    a, b = make_checkpoint(None, rs, 10.0, RuleParams()), make_checkpoint(None, rs, 20.0, RuleParams())
    assert later(a, b) is b and later(b, a) is b and later(None, a) is a and later(a, None) is a
    with pytest.raises(ValueError):
        make_checkpoint(b, rs, 10.0, RuleParams())
    for bad in (b"", b"\x90", b"\x81\xa1v\x02"):
        with pytest.raises(DecodeError):
            fold_from_state(bad, RuleParams())
    assert boundary_for(10_000.0, 3600.0, 7200.0) == 0.0 and boundary_for(20_000.0, 3600.0, 7200.0) == 10_800.0


async def test_a_replica_that_disagrees_with_a_certified_checkpoint_folds_once_not_per_signature():
    """A review's finding: every signature on a certified id this replica disagreed with cost a full fold."""
    from gtracd.control.replica import Checkpointer, Replica
    from gtracd.identity import Identity
    from gtracd.ledger.checkpoint import signed_body
    from gtracd.wire.envelope import Signer, decode_envelope

    from .test_ledger_sync import REPORTERS, rep

    anchors = [Identity.generate() for _ in range(3)]
    replica = Replica(None, RuleParams())
    for s in range(30):
        replica.ledger.add(rep(REPORTERS[0], s))
    folds = 0
    real = replica.checkpoint_at

    async def counted(b):
        nonlocal folds
        folds += 1
        return await real(b)

    replica.checkpoint_at = counted
    adopted = []
    cps = Checkpointer(replica, {a.peer_id for a in anchors}, "net", on_adopt=lambda: adopted.append(1))
    other = make_checkpoint(None, [rep(REPORTERS[1], s) for s in range(20)], 10.0, RuleParams())  # not ours
    for _ in range(3):
        for a in anchors:
            await cps.on_signature(decode_envelope(Signer(a).sign("ledger_checkpoint", signed_body(other, "net")).raw))
    assert folds == 1 and cps.counters["mismatched"] == 1 and replica.ledger.checkpoint is None and not adopted
    ours = make_checkpoint(None, replica.ledger, 15.0, RuleParams())  # the next boundary, as we fold it
    for a in anchors[:2]:
        await cps.on_signature(decode_envelope(Signer(a).sign("ledger_checkpoint", signed_body(ours, "net")).raw))
    assert replica.ledger.checkpoint == ours and adopted == [1] and cps.counters["adopted"] == 1


@PROP
@given(HONEST, BOUNDARY, PARAMS)
def test_a_checked_state_is_decoded_once_and_derives_the_same_floats(rs, b, p):
    """check() (a state arriving by sync, or loaded from disk) decodes once: its seq watermarks are kept and its
    fold goes to the first derivation, whatever rule parameters that uses; later ones decode anew."""
    cp = make_checkpoint(None, rs, b, p)
    got = Checkpoint(cp.boundary, cp.digest, cp.count, cp.state)  # the bytes only, as a peer or the disk has it
    got.check()
    assert got.upto == cp.upto == Checkpoint(cp.boundary, cp.digest, cp.count, cp.state).upto
    full = derive(Ledger(rs), p)
    assert derive(Ledger(rs, checkpoint=got), p) == full  # takes the checked fold
    assert "_checked_fold" not in got.__dict__
    assert derive(Ledger(rs, checkpoint=got), p) == full  # decodes again


def test_check_refuses_a_malformed_state():
    good = make_checkpoint(None, [], 100.0, RuleParams())
    for state in (b"\xc1", good.state[:-3], fold_state(Fold(RuleParams()), 100.0, {}).replace(b"upto", b"uptx")):
        with pytest.raises(DecodeError):
            Checkpoint(good.boundary, good.digest, 0, state).check()
