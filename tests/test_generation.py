"""What a generation reports and checks before relaying (seeker/generation.py), without a network."""

from __future__ import annotations


def _gen():
    from gtracd.control.peerview import PeerView
    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation

    return Generation(None, PeerView(), Params())


def test_a_blamed_peer_outside_the_chain_is_reported_alone():
    g = _gen()  # e.g. the first peer of a chain could not be reached: nothing else is blamed
    g._failed("cannot reach X", "X", True)
    assert g.report_bodies("n", False, "X", 0) == [
        {"network": "n", "request_id": g.sid, "model": "", "mode": "g-trac", "tokens": 0, "chain": ["X"],
         "latency_ms": [], "outcome": "failure", "culprit": 0}]
    g2 = _gen()
    g2._failed("worker busy", "X", False)  # a refusal: nobody is reported
    assert g2.report_bodies("n", False, None, 0) == []


def test_a_relayed_hidden_state_is_checked_before_the_next_hop_sees_it():
    from gtracd.wire.tensor import WireTensor

    g = _gen()
    ok = WireTensor("float32", (1, 3, 8), memoryview(bytes(96)))
    assert g._bad_hidden(ok, 3) is None
    assert "shape" in g._bad_hidden(WireTensor("float32", (1, 3, 9), memoryview(bytes(108))), 3)  # width changed
    assert "shape" in g._bad_hidden(WireTensor("float32", (1, 2, 8), memoryview(bytes(64))), 3)
    assert "dtype" in g._bad_hidden(WireTensor("int64", (1, 3, 8), memoryview(bytes(192))), 3)
    assert g._bad_hidden(None, 3) == "no hidden state"


def test_generated_text_and_worker_messages_reach_the_terminal_as_text(capsys):
    """Trust II, item 12: a last hop's pieces and a worker's error message are shown literally (no ESC
    sequences, no bidi overrides), while the text's own line breaks, tabs and emoji joiners stay."""
    from gtracd.seeker.main import _write
    from gtracd.wire.text import REPLACEMENT, shown, shown_text

    _write("ok\x1b[2J\x1b]0;pwned\x07 \u202egnp.exe\n\tnext \U0001F468\u200d\U0001F469 \x9b31m")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out and "\x9b" not in out
    assert out.count(REPLACEMENT) == 5 and "\n\tnext " in out and "\u200d" in out
    assert shown_text("plain text\n") == "plain text\n"
    assert "\x1b" not in shown(RuntimeError("worker said \x1b[31mred"))


class _Session:
    max_length = None

    def __init__(self, pid):
        self.pid = pid

    async def open(self, body, timeout):
        return None


class _Net:
    """Dials succeed except to the peers in `dead` (killed seconds ago: still alive in the view)."""

    def __init__(self, dead):
        self.dead, self.dialled = set(dead), []

    async def session(self, pid, timeout):
        from gtracd.net.hop import HopFailed

        self.dialled.append(pid)
        if pid in self.dead:
            raise HopFailed(pid, "cannot dial: connection refused")
        return _Session(pid)

    def forget(self, pid):
        pass


def _two_replica_view():
    from gtracd.control.peerview import PeerView, WorkerEntry

    v = PeerView(model="m")
    for pid, a, b in [("A", 0, 10), ("B1", 10, 20), ("B2", 10, 20), ("C", 20, 30)]:
        v.heard(WorkerEntry(pid, f"/p2p/host-{pid}", a, b, 30, "m", last_seen=1.0))
    v.set_ledger({"A": 0.99, "B1": 0.99, "B2": 0.98, "C": 0.99}, {})
    return v


async def test_opening_a_chain_routes_around_a_peer_it_cannot_reach_and_reports_it_alone():
    """Lab II: a worker killed seconds ago is still alive in the view; routing picks it; the dial fails before
    anything was computed. The chain opens on the live replica, the dead one is reported alone."""
    import random

    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation

    view = _two_replica_view()
    net = _Net({"B1"})
    g = Generation(net, view, Params(), "mr", rng=random.Random(0))
    await g.start()
    assert g.chain == ["A", "B2", "C"] and "B1" in net.dialled and not view.workers["B1"].alive
    assert g.provenance()["avoided"]["peers"] == ["B1"]
    reports = g.report_bodies("n", True, None, 0)
    assert {"network": "n", "request_id": g.sid, "model": "m", "mode": "mr", "tokens": 0, "chain": ["B1"],
            "latency_ms": [], "outcome": "failure", "culprit": 0} in reports
    assert all(r["chain"] == ["B1"] for r in reports if r["outcome"] == "failure")


async def test_opening_gives_up_after_its_routes_without_blaming_the_peers_it_reached():
    import random

    import pytest

    from gtracd.routing import Params
    from gtracd.seeker.generation import Generation, GenerationFailed

    view = _two_replica_view()
    g = Generation(_Net({"B1", "B2"}), view, Params(), "mr", rng=random.Random(0))
    with pytest.raises(GenerationFailed) as e:
        await g.start()
    assert e.value.code == "no_route" and "could not reach" in str(e.value)
    reports = g.report_bodies("n", False, e.value.culprit, 0)
    assert sorted(r["chain"][0] for r in reports) == ["B1", "B2"] and all(len(r["chain"]) == 1 for r in reports)
    g2 = Generation(_Net({"B1", "B2"}), _two_replica_view(), Params(), "mr", rng=random.Random(0))
    g2.open_routes = 2
    with pytest.raises(GenerationFailed) as e2:
        await g2.start()
    assert "2 routes tried" in str(e2.value) and e2.value.culprit is None and len(g2.accounts.unreached) == 2
