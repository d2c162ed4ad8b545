"""Dial hygiene: addresses from heartbeats are untrusted, so dialling them is bounded and backs off. The address
book (net/addressbook.py) is pure and driven here on a simulated clock; one live run checks its driver."""

from __future__ import annotations

import random

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from gtracd.identity import Identity
from gtracd.net.addressbook import AddressBook
from gtracd.net.host import running_host
from gtracd.net.librarylogs import LIBRARY_LOGS, count_library_logs
from gtracd.net.links import Links

from .waiting import until

IDS = [Identity.generate().peer_id for _ in range(60)]


def addr(pid: str) -> str:
    return f"/ip4/127.0.0.1/tcp/1/p2p/{pid}"


def test_a_flood_of_dead_addresses_costs_a_bounded_number_of_dials():
    book = AddressBook("me", interval=0.5, max_addrs=300, max_keep=40, rng=random.Random(1))
    for _ in range(1000):  # a thousand announced peers
        book.learn(addr(Identity.generate().peer_id), keep=True)
    assert len(book.addrs) <= 300 and len(book.kept) == 40
    dials, now = 0, 0.0
    while now < 4.0:  # the driver's rounds, every interval; every dial fails (closed port)
        for pid in book.due(now, connected=set(), cut=set()):
            dials += 1
            book.failed(pid, now, "ConnectionRefusedError")
        now += 0.5
    assert 40 <= dials <= 40 * 4, dials  # without backoff: 40 peers x 8 rounds = 320 dials
    assert all(book.fails[p] >= 1 for p in book.kept)
    assert book.status(now, set())["backing_off"] > 0


OPS = st.lists(st.one_of(
    st.tuples(st.just("learn"), st.sampled_from(IDS), st.booleans()),
    st.tuples(st.just("trust"), st.sampled_from(IDS)),
    st.tuples(st.just("release"), st.sampled_from(IDS)),
    st.tuples(st.just("fail"), st.sampled_from(IDS)),
    st.tuples(st.just("ok"), st.sampled_from(IDS)),
    st.tuples(st.just("tick"), st.floats(0, 300)),
), max_size=80)


@settings(max_examples=300)
@given(ops=OPS, pinned=st.sets(st.sampled_from(IDS[:5]), max_size=3))
def test_the_book_stays_bounded_keeps_what_it_must_and_never_dials_early(ops, pinned):
    book = AddressBook("me", interval=1.0, max_addrs=12, max_keep=5, max_backoff=60.0, rng=random.Random(0))
    for p in sorted(pinned):
        book.learn(addr(p), pin=True)
    now, connected = 0.0, set()
    for op in ops:
        if op[0] == "learn":
            book.learn(f"/ip4/10.0.0.9/tcp/2/p2p/{op[1]}", keep=op[2], connected=lambda: frozenset(connected))
        elif op[0] == "trust":
            book.hold(op[1], trusted=True)
        elif op[0] == "release":
            book.release(op[1])
        elif op[0] == "fail" and op[1] in book.kept:
            book.failed(op[1], now, "refused")
        elif op[0] == "ok":
            book.succeeded(op[1])
        elif op[0] == "tick":
            now += op[1]
        assert len(book.addrs) <= 12
        assert len(book.kept - book.trusted) <= 5  # the heartbeat-learned budget
        assert book.kept <= set(book.addrs)  # only what it can dial
        assert pinned <= book.kept  # the bootstrap list is always kept, never re-pointed
        assert all(book.addrs[p] == (addr(p),) for p in pinned)
        for p in book.due(now, connected, cut=set()):
            assert book.next_try.get(p, 0.0) <= now  # a failed peer waits out its backoff
        for t in book.next_try.values():
            assert t - now <= 60.0 * 1.5 + 1e-9


async def test_the_driver_dials_what_the_book_says_and_counts_librarys_errors_instead_of_printing_them(capfd):
    count_library_logs()
    async with running_host(Identity.generate()) as host:
        links = Links(host, interval=0.5, dial_timeout=1.0, max_addrs=300, max_keep=40)
        for pid in IDS[:40]:
            links.hold(links.learn(addr(pid)))
        async with trio.open_nursery() as n:
            await n.start(links.keep)
            await until(lambda: all(links.fails.get(p, 0) >= 1 for p in links.keep_ids), 30, "every kept peer dialled")
            n.cancel_scope.cancel()
        assert links.status()["backing_off"] > 0 and links.status()["keep"] == 40
    err = capfd.readouterr().err
    assert "Failed to open" not in err and "ERROR" not in err  # libp2p's own dial errors: counted, not printed
    assert sum(LIBRARY_LOGS.values()) > 0
