"""Which addresses a daemon offers and in which order peers dial them (net/addresses.py, pure), and the blame
of a hop whose relay died (seeker/blame.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gtracd.net.addresses import MAX_ANNOUNCED, announced, dial_order, expand, scope
from gtracd.net.hop import PROTOCOL, TIMEOUT, TRANSPORT, HopFailed
from gtracd.seeker.blame import verdict

ME = "12D3KooWMe"
R = "12D3KooWRelay"
CIRCUIT = f"/ip4/203.0.113.9/tcp/4001/p2p/{R}/p2p-circuit"


def test_a_wildcard_listener_announces_its_interfaces_not_loopback():
    ips = ["127.0.0.1", "192.168.1.20", "10.8.0.3", "::1", "fe80::1"]
    got = announced(["/ip4/0.0.0.0/tcp/4001"], ips, [], [], ME)
    assert got == [f"/ip4/192.168.1.20/tcp/4001/p2p/{ME}", f"/ip4/10.8.0.3/tcp/4001/p2p/{ME}"]
    # loopback only when that is all there is (one machine: tests, the demo)
    assert announced(["/ip4/0.0.0.0/tcp/5"], ["127.0.0.1"], [], [], ME) == [f"/ip4/127.0.0.1/tcp/5/p2p/{ME}"]
    assert announced(["/ip4/127.0.0.1/tcp/5"], ips, [], [], ME) == [f"/ip4/127.0.0.1/tcp/5/p2p/{ME}"]
    # --announce replaces them; circuits come last; none: circuits only
    assert announced(["/ip4/0.0.0.0/tcp/4001"], ips, ["/ip4/203.0.113.7/tcp/4001"], [CIRCUIT], ME) == [
        f"/ip4/203.0.113.7/tcp/4001/p2p/{ME}", f"{CIRCUIT}/p2p/{ME}"]
    assert announced(["/ip4/0.0.0.0/tcp/4001"], ips, ["none"], [CIRCUIT], ME) == [f"{CIRCUIT}/p2p/{ME}"]
    assert expand(["/ip6/::/tcp/7"], ips) == ["/ip6/::1/tcp/7", "/ip6/fe80::1/tcp/7"]


def test_dialers_skip_another_machines_loopback_and_try_circuits_last():
    lan, pub, lo = "/ip4/192.168.1.20/tcp/1/p2p/X", "/ip4/203.0.113.7/tcp/1/p2p/X", "/ip4/127.0.0.1/tcp/1/p2p/X"
    circ = f"{CIRCUIT}/p2p/X"
    assert dial_order([circ, lo, lan, pub]) == [lan, pub, circ]
    assert dial_order([lo]) == [lo]  # a peer on this machine
    assert dial_order([circ, lo]) == [lo, circ]
    assert dial_order(["/ip4/0.0.0.0/tcp/1/p2p/X", "garbage", lan]) == [lan]
    assert dial_order(["/dns4/home.example/tcp/1/p2p/X", circ]) == ["/dns4/home.example/tcp/1/p2p/X", circ]
    assert scope("/ip4/100.64.0.1/tcp/1") == "private" and scope("/ip4/224.0.0.1/tcp/1") is None


@given(st.lists(st.sampled_from(["/ip4/127.0.0.1/tcp/1/p2p/X", "/ip4/10.0.0.1/tcp/1/p2p/X",
                                 "/ip4/8.8.4.4/tcp/1/p2p/X", f"{CIRCUIT}/p2p/X", "/ip4/0.0.0.0/tcp/1/p2p/X",
                                 "nonsense", "/ip6/::1/tcp/1/p2p/X"]), max_size=40))
def test_dial_order_is_bounded_and_only_reorders(addrs):
    out = dial_order(addrs)
    assert len(out) <= MAX_ANNOUNCED and set(out) <= set(addrs[:MAX_ANNOUNCED])
    kinds = [scope(a) for a in out]
    assert kinds == sorted(kinds, key=lambda k: k == "circuit")  # every circuit after every direct address


def test_a_hop_whose_relay_died_is_repaired_but_not_blamed():
    for reason in (TIMEOUT, TRANSPORT):
        assert verdict(HopFailed("p", "x", reason, relay_lost=True)) .blamed is False
        assert verdict(HopFailed("p", "x", reason)).blamed is True  # the relay still answers: the worker's
    assert verdict(HopFailed("p", "x", PROTOCOL, relay_lost=True)).blamed is True  # garbled frames are its own
