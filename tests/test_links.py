"""Dial hygiene: addresses from heartbeats are untrusted, so dialling them is bounded and backs off."""

from __future__ import annotations

import trio

from gtracd.identity import Identity
from gtracd.net.host import running_host
from gtracd.net.librarylogs import LIBRARY_LOGS, count_library_logs
from gtracd.net.links import Links


async def test_a_flood_of_dead_addresses_costs_a_bounded_number_of_dials(capfd):
    count_library_logs()
    async with running_host(Identity.generate()) as host:
        links = Links(host, interval=0.5, dial_timeout=1.0, max_addrs=300, max_keep=40)
        for _ in range(1000):  # a thousand announced peers, all dead (closed port)
            pid = links.learn(f"/ip4/127.0.0.1/tcp/1/p2p/{Identity.generate().peer_id}")
            links.hold(pid)
        assert len(links.addrs) <= 300 and len(links.keep_ids) == 40
        async with trio.open_nursery() as n:
            await n.start(links.keep)
            await trio.sleep(4.0)  # without backoff: 40 peers x 8 rounds = 320 dials
            n.cancel_scope.cancel()
        assert 40 <= links.dial_failures <= 40 * 4, links.dial_failures
        assert all(links.fails[p] >= 1 for p in links.keep_ids)
        assert links.status()["backing_off"] > 0
    err = capfd.readouterr().err
    assert "Failed to open" not in err and "ERROR" not in err  # libp2p's own dial errors: counted, not printed
    assert sum(LIBRARY_LOGS.values()) > 0
