"""Issue 23, item 7: every per-identity table has a global bound, with an eviction order that keeps
measured, trusted peers; and cheap checks come before signature checks (pure tests)."""

from __future__ import annotations

from gtracd.control.peerview import PeerView, WorkerEntry
from gtracd.identity import Identity
from gtracd.ledger import Admission, AdmissionParams, Ledger, Report, RuleParams
from gtracd.ledger.crdt import Derived
from gtracd.wire.envelope import encode_envelope
from gtracd.wire.verifier import Verifier


def w(pid: str, a: int, b: int, model: str = "m", t: float = 1.0) -> WorkerEntry:
    return WorkerEntry(pid, f"/p2p/{pid}", a, b, 30, model, last_seen=t)


def test_a_heartbeat_flood_neither_grows_the_view_nor_the_route():
    v = PeerView(max_workers=256, probation=4)
    honest = [w(f"h{i}", a, b) for i, (a, b) in enumerate([(0, 10), (10, 20), (20, 30), (0, 15), (15, 30)])]
    for h in honest:
        v.heard(h)
    for h in honest[:3]:
        v.observe_latency(h.peer_id, 40.0)  # measured here: proven
    v.set_ledger({"h3": 0.99}, {})  # known to the ledger: proven
    base = {p.id for p in v.snapshot("m").peers}
    for i in range(20_000):
        v.heard(w(f"fake{i}", 0, 30, t=2.0))
    assert len(v.workers) <= 256 and v.left_out >= 20_000 - 256
    assert all(h.peer_id in v.workers for h in honest)
    proven = {f"h{i}" for i in range(4)}
    snap = {p.id for p in v.snapshot("m").peers}
    assert proven <= snap and len(snap - proven) <= 4  # at most `probation` unproven workers reach routing
    offered = set()
    for _ in range(80):  # ... taken in turn: the honest newcomer is offered too, however many came first
        offered |= {p.id for p in v.snapshot("m").peers}
    assert "h4" in offered and base <= offered
    v.outcome(["fake0"], False, "fake0")  # routed, failed: proven (with the trust it earned), probation frees up
    assert "fake0" in v.proven and v.trust("fake0") < 0.96
    v.expire(10_000.0, 60.0)  # every worker falls silent: the view empties
    assert not v.workers and not v.proven and not v._unproven and not v._proven_by and not v._unproven_by


def test_a_worker_known_to_the_ledger_still_gets_in_when_the_view_is_full():
    v = PeerView(max_workers=8)
    for i in range(8):
        v.heard(w(f"fake{i}", 0, 30))
    v.set_ledger({"late": 0.99}, {})
    assert v.heard(w("late", 0, 30)) and "late" in v.workers and len(v.workers) == 8


def test_a_replayed_heartbeat_costs_no_signature_check():
    ident = Identity.generate()
    ver = Verifier()
    env = encode_envelope(ident, "heartbeat", {"network": "n", "model": "m", "start": 0, "end": 1, "addrs": [],
                                               "free_tokens": 1, "load": 0.0, "version": "x"}, seq=1, ts=100.0)
    assert ver.admit(env.raw, 100.0) is not None and ver.verified == 1
    for _ in range(100):
        assert ver.admit(env.raw, 100.0) is None
    assert ver.verified == 1 and ver.dropped["replay"] == 100


def test_the_fold_forgets_fresh_reporters_beyond_its_bound_and_keeps_established_ones():
    p = RuleParams(standing_age_s=100.0, standing_reports=2, window_s=10.0, max_reporters=50, max_rated=20)
    key = lambda i: i.to_bytes(2, "big") * 16  # noqa: E731
    hist = [Report(key(i), k, 10.0 * k + i, ("W",), (40.0,), "success") for k in range(20) for i in range(3)]
    flood = [Report(key(100 + j), 0, 300.0 + j * 0.01, (f"w{j % 500}",), (40.0,), "success") for j in range(2000)]
    f = Derived(Ledger(hist + flood), p).current()
    assert len(f.first) <= 50 and all(f.established(key(i), 300.0) for i in range(3))
    assert len(f.recent) <= 20


def test_admission_remembers_a_bounded_number_of_workers():
    adm = Admission(Ledger(), AdmissionParams(network="n", max_known=100))
    for i in range(1000):
        adm.heard(f"w{i}", 1000.0 + i)
    assert len(adm.known) == 100 and "w999" in adm.known
