"""Liveness runs on the monotonic clock: a wall-clock jump (NTP, a phone's clock set by hand) neither kills
live workers nor revives dead ones; only signed timestamps use wall time (their skew bound is the verifier's).
A persisted view keeps each worker's age across a restart."""

from __future__ import annotations

import time

from gtracd.control.follower import from_wall, to_wall
from gtracd.control.peerview import PeerView, WorkerEntry, entry_from_heartbeat


class Env:
    sender_id = "W"
    body = {"addrs": ["/ip4/127.0.0.1/tcp/1/p2p/W"], "start": 0, "end": 4, "total_layers": 4, "model": "m",
            "free_tokens": 10, "load": 0.0}


def test_a_wall_clock_jump_changes_no_worker_liveness(monkeypatch):
    v = PeerView(model="m", depth=4)
    v.node_timeout_s = 30.0
    v.heard(entry_from_heartbeat(Env(), time.monotonic()))
    w = v.workers["W"]
    real = time.time
    for jump in (+3600.0, -3600.0):  # the wall clock moves an hour either way
        monkeypatch.setattr(time, "time", lambda jump=jump: real() + jump)
        assert v.routable(w, time.monotonic()) and v.snapshot("m").peers[0].alive
        assert v.refresh(time.monotonic(), 30.0) == [] and v.expire(time.monotonic(), 300.0) == []
    monkeypatch.setattr(time, "time", real)
    assert not v.routable(w, time.monotonic() + 31.0)  # and the monotonic clock still ages it


def test_a_saved_view_keeps_ages_across_a_restart():
    now = time.monotonic()
    ws = [{"peer_id": "A", "last_seen": now - 5.0}, {"peer_id": "B", "last_seen": now - 200.0}, {"peer_id": "C"}]
    saved = to_wall({"workers": ws})
    assert abs(saved["workers"][0]["last_seen"] - (time.time() - 5.0)) < 1.0  # wall time on disk
    back = from_wall(saved)
    assert abs(back["workers"][0]["last_seen"] - (now - 5.0)) < 1.0
    assert abs(back["workers"][1]["last_seen"] - (now - 200.0)) < 1.0 and "last_seen" not in back["workers"][2]
    v = PeerView(model="m", depth=4)
    redial = v.restore({"workers": [{**WorkerEntry("A", "/p2p/A", 0, 4, 4, "m").__dict__,
                                     "last_seen": back["workers"][0]["last_seen"]}]}, time.monotonic(), 30.0, 300.0)
    assert [e.peer_id for e in redial] == ["A"] and v.workers["A"].alive
    assert from_wall("garbage") == {} and from_wall({"workers": "x"}) == {}
