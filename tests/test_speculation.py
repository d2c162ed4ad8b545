"""Speculative decoding (issue 26): prompt-lookup drafts and the auto controller (pure), and the worker's
side, a verifying step and the KV rollback at the next call (tiny models)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gtracd.seeker.speculation import (
    AUTO_MAX,
    MAX_DRAFT,
    PATIENCE,
    PAUSE_MAX,
    PAUSE_MIN,
    Speculation,
    accepted,
    parse,
    propose,
)


def test_drafts_are_what_followed_the_latest_earlier_occurrence_of_the_context_tail():
    ctx = [1, 2, 3, 9, 9, 1, 2, 3, 4, 5, 7, 1, 2, 3]
    assert propose(ctx, 3) == [4, 5, 7]  # the latest earlier "1 2 3" is followed by 4 5 7
    assert propose(ctx, 1) == [4]
    assert propose([1, 2, 3, 4], 4) == []  # nothing repeats
    assert propose([5, 6, 0, 5, 6], 8) == [0, 5, 6]  # up to the end of the context
    assert propose([7, 7], 2) == []  # a 1-token match is not enough (NGRAM_MIN)
    assert propose(ctx, 0) == [] and propose([], 4) == []


@given(st.lists(st.integers(0, 5), max_size=60), st.integers(0, 12))
def test_a_draft_always_continues_an_earlier_match_of_the_tail(ctx, k):
    d = propose(ctx, k)
    assert len(d) <= k
    if d:
        found = any(ctx[s:s + n] == ctx[len(ctx) - n:] and ctx[s + n:s + n + len(d)] == d
                    for n in (2, 3) for s in range(len(ctx) - n))
        assert found


@given(st.lists(st.integers(0, 3), max_size=10), st.lists(st.integers(0, 3), min_size=1, max_size=11))
def test_accepted_is_the_longest_confirmed_prefix(drafts, chosen):
    m = accepted(drafts, chosen)
    assert drafts[:m] == chosen[:m] and m <= len(drafts)
    assert m == len(drafts) or m == len(chosen) or drafts[m] != chosen[m]


def test_the_setting_parses_auto_off_or_a_draft_count():
    assert parse("auto") == "auto" and parse(" OFF ") == "off" and parse(0) == "off" and parse("0") == "off"
    assert parse(5) == 5 and parse("12") == 12
    for bad in (-1, MAX_DRAFT + 1, "lots", True, 2.5, None):
        with pytest.raises(ValueError):
            parse(bad)


def test_auto_grows_on_success_shrinks_on_rejection_and_pauses_while_drafts_keep_failing():
    sp = Speculation("auto")
    k0 = sp.want()
    sp.observe(k0, k0)
    assert sp.want() == min(AUTO_MAX, k0 + 2)
    for _ in range(10):
        sp.observe(sp.k, sp.k)
    assert sp.k == AUTO_MAX
    sp.observe(AUTO_MAX, 2)
    assert sp.k == AUTO_MAX - 1
    for _ in range(PATIENCE):  # nothing kept, PATIENCE times: plain steps for a while
        sp.observe(sp.k, 0)
    assert [sp.want() for _ in range(PAUSE_MIN)] == [0] * PAUSE_MIN and sp.want() > 0
    for _ in range(PATIENCE):  # again: twice as long
        sp.observe(sp.k, 0)
    assert sum(sp.want() == 0 for _ in range(2 * PAUSE_MIN + 1)) == 2 * PAUSE_MIN
    for _ in range(20 * PATIENCE):
        sp.observe(1, 0)
        while sp.paused:
            sp.want()
    assert sp.backoff == PAUSE_MAX
    sp.observe(1, 1)  # a draft held: back to short pauses
    assert sp.backoff == PAUSE_MIN and sp.accepted_per_trip() > 1.0


def test_a_fixed_count_never_adapts_and_off_never_drafts():
    sp = Speculation(3)
    for _ in range(10):
        sp.observe(3, 0)
    assert sp.want() == 3
    sp.off()
    assert sp.want() == 0 and not sp.on
    assert Speculation("off").want() == 0


# ------------------------------------------------------------------ the worker's side (tiny model)

@pytest.mark.model
def test_a_verifying_step_chooses_what_plain_steps_choose_and_the_next_call_rolls_back(tmp_path):
    from gtracd.engine.server import ShardServer

    from .models import tiny_llama
    from .test_shard import monolithic

    folder = tiny_llama(tmp_path, layers=4)
    prompt = [5, 17, 99, 3, 42, 7]
    _, ref = monolithic(folder, prompt, 12)
    srv = ShardServer(folder, 0, 4)
    sid = b"s" * 16
    srv.open({"session": sid, "model": srv.fingerprint, "start": 0, "end": 4, "max_length": 64})
    assert srv.extend({"session": sid, "pos": 0, "tokens": prompt})["token"] == ref[0]
    drafts = ref[1:4] + [(ref[4] + 1) % 256, 9, 9]  # three right, then wrong ones
    res = srv.extend({"session": sid, "pos": len(prompt), "tokens": [ref[0]] + drafts, "verify": True})
    assert res["tokens"][:4] == ref[1:5] and res["token"] == res["tokens"][-1]  # after the 3 right drafts: ref
    assert res["cached"] == len(prompt) + 7 and accepted(drafts, res["tokens"]) == 3
    # keep the last token + 3 drafts; the next call starts there: the cache drops the rest first
    pos = len(prompt) + 4
    out = [srv.extend({"session": sid, "pos": pos, "tokens": [ref[4]]})]
    out.append(srv.extend({"session": sid, "pos": pos + 1, "tokens": [out[-1]["token"]]}))
    assert [o["token"] for o in out] == ref[5:7] and out[-1]["cached"] == pos + 2
    # a verifying step of one position still answers a list; it is never batched
    one = srv.prepare({"session": sid, "pos": pos + 2, "tokens": [out[-1]["token"]], "verify": True})
    assert not srv.batchable(one) and srv.compute(one)["tokens"] == [ref[7]]


@pytest.mark.model
def test_only_the_last_shard_verifies_and_sampling_uses_each_positions_own_seed(tmp_path):
    from gtracd.engine.server import ShardServer

    from .models import tiny_llama

    folder = tiny_llama(tmp_path, layers=4)
    a, b = ShardServer(folder, 0, 2), ShardServer(folder, 2, 4)
    sampling = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 3}
    sid, toks = b"t" * 16, [5, 17, 99, 3, 42, 7]
    for s in (a, b):
        s.open({"session": sid, "model": s.fingerprint, "start": s.start, "end": s.end, "max_length": 64,
                "sampling": sampling})
    h = a.extend({"session": sid, "pos": 0, "tokens": toks, "verify": True})
    assert "tokens" not in h and "token" not in h  # not the last shard: a hidden state as ever
    from gtracd.wire import decode_tensor

    res = b.extend({"session": sid, "pos": 0, "hidden": decode_tensor(h["hidden"]), "verify": True})
    plain = []
    for n in range(1, len(toks) + 1):  # the same positions, one plain prefill each
        sid2 = bytes([n]) * 16
        for s in (a, b):
            s.open({"session": sid2, "model": s.fingerprint, "start": s.start, "end": s.end, "max_length": 64,
                    "sampling": sampling})
        hh = a.extend({"session": sid2, "pos": 0, "tokens": toks[:n]})
        plain.append(b.extend({"session": sid2, "pos": 0, "hidden": decode_tensor(hh["hidden"])})["token"])
    assert res["tokens"] == plain


def test_a_check_window_opens_at_a_token_position_so_speculative_trips_cannot_skip_it():
    import random

    from gtracd.seeker.checker import Check, SpotChecker

    sc = SpotChecker(rate=1.0, calls=2, rng=random.Random(3))
    sc.checks[0] = Check(2, start_at=10)
    # a turn of speculative trips: tokens generated before each call jump by several at a time
    assert [sc.due(0, at) for at in (0, 1, 6, 9)] == [False] * 4
    assert sc.due(0, 14)  # the first call at or past token 10 is checked, however many tokens a trip yielded
    sc.checks[1] = Check(2, start_at=1)
    assert [sc.due(1) for _ in range(3)] == [False, True, True]  # without positions: calls, as before


def test_replicas_compare_per_position_tokens_only_when_both_answered_them():
    from gtracd.seeker.spotcheck import output_digest, same_output

    new, old = {"token": 7, "tokens": [3, 5, 7]}, {"token": 7}  # a release before wire version 2 answers one
    assert same_output(new, old) and same_output(old, new)
    assert not same_output(new, {"token": 7, "tokens": [3, 6, 7]})
    assert not same_output(new, {"token": 8}) and same_output(new, dict(new))
    assert output_digest(new) != output_digest(old)


@pytest.mark.model
def test_a_half_precision_wire_never_sends_an_overflow():
    import torch

    from gtracd.engine.server import as_wire_dtype

    h = torch.tensor([[[1.0, -70000.0, 3.0]]])
    assert as_wire_dtype(h, "float16").dtype == torch.float32  # float16 would make it -inf
    assert as_wire_dtype(h, "bfloat16").dtype == torch.bfloat16  # bfloat16 holds it
    assert as_wire_dtype(h / 1e3, "float16").dtype == torch.float16
