"""One real-process test per attack on the trust layer (issue 10), each a small run of the scenario that
`gtracd bench attack` measures at full size (gtracd/benchmarks/attack.py): real daemons on loopback, an
honest seeker in this process."""

from __future__ import annotations

import pytest

from gtracd.benchmarks import attack, attacknets

pytestmark = pytest.mark.procs


@pytest.fixture(scope="module")
def worker_net(tmp_path_factory):
    net = attacknets.WorkerNet(tmp_path_factory.mktemp("attack-workers"))
    net.start()
    yield net
    assert net.stop() == [0] * (len(net.workers) + len(net.cn.procs))


@pytest.fixture(scope="module")
def lab_net(tmp_path_factory):
    net = attacknets.LabNet(tmp_path_factory.mktemp("attack-lab"))
    net.start()
    yield net
    assert all(rc == 0 for rc in net.stop())


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_a_spoofed_identity_on_an_honest_workers_address_gains_nothing(worker_net):
    r = await attack.spoof(worker_net, requests=6)
    assert r["spoof_credit_gained"] == 0 and r["spoof_success_reports"] == 0


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_many_identities_announcing_another_model_do_not_redirect_a_pinned_seeker(worker_net):
    r = await attack.hijack(worker_net, identities=8, requests=2)
    assert r["model_hijacked"] is False and r["hijack_honest_success_rate"] == 1.0


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_a_session_flood_neither_fails_honest_requests_nor_costs_the_worker_trust(worker_net):
    r = await attack.flood(worker_net, requests=4, streams=8)
    assert r["flood_honest_success_rate"] == 1.0
    assert r["flood_failure_reports"] == 0 and r["flood_honest_trust_drop"] == 0
    assert r["flood_attacker"]["opened"] >= 6  # the flood did fill the worker


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_malformed_frames_and_envelopes_are_counted_never_crash(worker_net):
    r = await attack.fuzz(worker_net, stream_cases=2000, gossip_cases=120)
    assert r["fuzz_crashes"] == 0 and r["fuzz_service_ok_after"]
    assert r["fuzz_stream_unanswered"] == 0 and sum(r["fuzz_stream_answered_by_reason"].values()) >= 2000
    assert r["fuzz_gossip_unaccounted"] == 0 and sum(r["fuzz_gossip_dropped_by_reason"].values()) > 0


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_a_spot_check_catches_a_lying_worker_and_the_request_finishes_correct(lab_net):
    r = await attack.byzantine(lab_net, max_requests=10, rate=1.0, trials=1)
    assert r["byzantine_requests_to_detect"] is not None
    assert r["byzantine_trust_after"] < 0.96 and r["byzantine_avoided_after"] == 1.0


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_a_liar_on_probation_is_caught_on_its_first_use_before_a_wrong_token(lab_net):
    r = await attack.first_use(lab_net)
    assert r["probation_routed_through"] and r["probation_caught_on_first_use"] and r["probation_tokens_exact"]


@pytest.mark.model
@pytest.mark.timeout(120)
async def test_honest_replicas_are_never_accused(lab_net):
    r = await attack.accusations(lab_net, min_checked=100, tokens=12)
    assert r["checked_hops"] >= 100 and r["false_accusations"] == 0 and r["check_mismatches"] == 0


@pytest.mark.timeout(120)
async def test_fresh_sybils_can_neither_slander_nor_stuff_ballots(tmp_path):
    net = attacknets.LedgerNet(tmp_path)
    net.start()
    try:
        r = await attack.sybils(net, sybil_count=20, each=4)
    finally:
        assert all(rc == 0 for rc in net.stop())
    assert r["honest_trust_before_attack"] >= 0.96 and r["honeypot_trust_before_attack"] < 0.96
    assert r["slander_honest_min_trust"] >= 0.96 and r["ballot_stuffing_honeypot_max_trust"] < 0.96
    assert r["replicas_identical_after"]
