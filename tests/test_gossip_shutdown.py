"""A pubsub reader that outlives the pubsub service (every shutdown stops pubsub before the host) ends quietly
instead of ending the daemon with an error; any other error still propagates."""

from __future__ import annotations

import pytest

from gtracd.net.gossip import guarded_pubsub_class

pytestmark = pytest.mark.timeout(30)


def _reader(monkeypatch, error: Exception):
    from libp2p.pubsub.pubsub import Pubsub

    async def library_reader(self, stream):
        raise error

    monkeypatch.setattr(Pubsub, "continuously_read_stream", library_reader)
    cls = guarded_pubsub_class()
    return object.__new__(cls)  # no host or router needed: only the reader is exercised


async def test_a_message_read_after_the_service_stopped_ends_the_reader(monkeypatch):
    pubsub = _reader(monkeypatch, RuntimeError("Nursery is closed to new arrivals"))
    await pubsub.continuously_read_stream(stream=None)


async def test_other_errors_from_the_reader_still_propagate(monkeypatch):
    pubsub = _reader(monkeypatch, RuntimeError("something else"))
    with pytest.raises(RuntimeError, match="something else"):
        await pubsub.continuously_read_stream(stream=None)
