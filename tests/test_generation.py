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
