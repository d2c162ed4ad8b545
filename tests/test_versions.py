"""Rolling upgrades (wire.versions, docs/upgrades.md): a build reads the previous and the next wire version
(the next one's unknown fields left out, its unknown kinds counted, its signatures still checked over what
it signed), refuses anything else with the counted reason `wire_version`, and a network mixing this release
with a daemon that writes the next version generates the same text."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import msgpack
import pytest

from gtracd.errors import DecodeError
from gtracd.identity import Identity
from gtracd.wire import Verifier, decode_frame, encode_frame
from gtracd.wire.codec import packb
from gtracd.wire.envelope import DOMAIN, decode_envelope, encode_envelope
from gtracd.wire.versions import CURRENT, SPEAKS, WIRE, VersionRefused

NEXT = CURRENT + 1  # the next release's wire version

ALICE = Identity(bytes(range(32)))
NOW = 1_800_000_000.0
HB = {"network": "n", "model": "m", "start": 0, "end": 4, "addrs": ["/ip4/127.0.0.1/tcp/1"], "free_tokens": 10,
      "load": 0.0, "version": "0.1.0"}


def signed(v: int, kind: str, body: dict, seq: int = 1) -> bytes:
    """An envelope as a build writing wire version `v` signs it."""
    sig = ALICE.sign(DOMAIN + packb([v, kind, ALICE.public, seq, NOW, body]))  # the canonical form signed
    return packb({"v": v, "kind": kind, "from": ALICE.public, "seq": seq, "ts": NOW, "body": body, "sig": sig})


def test_this_release_reads_every_older_version_and_the_next():
    assert CURRENT == 2 and WIRE == 1 and SPEAKS == (1, 3)


def test_the_next_versions_new_fields_are_left_out_and_its_signature_still_verifies():
    v = Verifier()
    env = v.admit(signed(NEXT, "heartbeat", {**HB, "added_in_v2": {"x": 1}}), NOW)
    assert env is not None and env.body == HB and env.v == NEXT
    assert v.dropped == {}
    # a field it added with a forged value is still caught: the signature covers what was sent
    raw = msgpack.unpackb(signed(NEXT, "heartbeat", {**HB, "added_in_v2": 1}, seq=2), raw=False)
    raw["body"]["added_in_v2"] = 2
    assert v.admit(packb(raw), NOW) is None and v.dropped["bad_signature"] == 1


def test_known_fields_of_a_newer_message_are_checked_as_strictly_as_ever():
    with pytest.raises(DecodeError):
        decode_envelope(signed(NEXT, "heartbeat", {**HB, "start": -1, "added": 1}))


def test_a_kind_the_next_version_added_is_counted_not_called_malformed():
    v = Verifier()
    assert v.admit(signed(NEXT, "keyring_gossip_v2", {"network": "n"}), NOW) is None
    assert v.dropped == {"unknown_kind": 1}
    assert v.admit(signed(1, "keyring_gossip_v2", {"network": "n"}), NOW) is None  # from our own version: malformed
    assert v.dropped["malformed"] == 1


@pytest.mark.parametrize("version", [0, NEXT + 1, 99, "1", None])
def test_a_version_outside_the_range_is_refused_with_its_own_counted_reason(version):
    v = Verifier()
    assert v.admit(signed(version, "heartbeat", HB), NOW) is None
    assert v.dropped == {"wire_version": 1}
    with pytest.raises(VersionRefused, match=rf"reads 1-{NEXT} .*upgrade"):
        decode_envelope(signed(version, "heartbeat", HB))


def test_frames_follow_the_same_rules():
    body = {"session": b"s" * 16, "code": "busy", "message": "x"}
    for v, extra in ((1, {}), (CURRENT, {}), (NEXT, {"added_in_v2": [1, 2]})):
        raw = msgpack.packb({"v": v, "kind": "error", "body": {**body, **extra}}, use_bin_type=True)
        assert decode_frame(raw) == ("error", body)
    with pytest.raises(DecodeError, match="unknown field"):  # this version's own frames stay strict
        decode_frame(msgpack.packb({"v": 1, "kind": "error", "body": {**body, "x": 1}}, use_bin_type=True))
    with pytest.raises(VersionRefused):
        decode_frame(msgpack.packb({"v": NEXT + 1, "kind": "error", "body": body}, use_bin_type=True))
    assert msgpack.unpackb(encode_frame("error", body))["v"] == WIRE


def test_a_field_a_version_added_is_written_in_it_and_unknown_to_older_messages():
    """Speculative steps (wire version 2): a frame that carries `verify` or `tokens` is written in version 2, every
    other frame in version 1 (a release that reads only version 1 still reads it); a version-1 frame carrying a
    version-2 field is malformed, and the release before (which reads version 2 as its next) leaves it out."""
    step = {"session": b"s" * 16, "pos": 3, "tokens": [1, 2, 3]}
    assert msgpack.unpackb(encode_frame("step", step))["v"] == 1
    raw = encode_frame("step", {**step, "verify": True})
    assert msgpack.unpackb(raw)["v"] == 2 and decode_frame(raw) == ("step", {**step, "verify": True})
    res = {"session": b"s" * 16, "cached": 4, "token": 5, "tokens": [7, 8, 5], "compute_ms": 1.0}
    assert msgpack.unpackb(encode_frame("result", res))["v"] == 2
    with pytest.raises(DecodeError, match="wire version 2"):
        decode_frame(msgpack.packb({"v": 1, "kind": "step", "body": {**step, "verify": True}}, use_bin_type=True))


@pytest.mark.procs
@pytest.mark.smoke
def test_a_preview_build_writes_the_next_version_and_this_one_reads_it():
    code = ("from gtracd.identity import Identity; from gtracd.wire import Signer, encode_frame; import sys, json;"
            "from gtracd.wire.versions import SPEAKS;"
            "e = Signer(Identity(bytes(range(32)))).sign('heartbeat', json.loads(sys.argv[1]));"
            "print(json.dumps([e.raw.hex(), encode_frame('cancel', {'session': b's' * 16}).hex(), list(SPEAKS)]))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(HB)], capture_output=True, text=True, check=True,
                         env={"GTRACD_WIRE_PREVIEW": "next", "PATH": "/usr/bin:/bin"}).stdout
    env_hex, frame_hex, speaks = json.loads(out)
    assert speaks == [1, NEXT + 1]  # the next release reads this one
    v = Verifier()
    env = v.admit(bytes.fromhex(env_hex), time.time())
    assert env is not None and env.v == NEXT and env.body == HB, v.dropped
    assert decode_frame(bytes.fromhex(frame_hex)) == ("cancel", {"session": b"s" * 16})
    assert encode_envelope(ALICE, "heartbeat", HB, 1, NOW).v == 1


def test_a_newer_message_that_cannot_be_re_encoded_is_malformed_at_decode():
    """What a newer peer signed must encode again (the signature check re-encodes it): a body with bytes for
    field names, or an unknown field whose keys cannot be ordered, is refused when it is read — never later in
    a handler that would not expect it."""
    for body in ({**HB, b"zz": 1}, {**HB, "added": {b"a": 1, "b": 2}}):
        raw = msgpack.packb({"v": NEXT, "kind": "heartbeat", "from": ALICE.public, "seq": 1, "ts": NOW, "body": body,
                             "sig": b"s" * 64}, use_bin_type=True)
        with pytest.raises(DecodeError):
            decode_envelope(raw)
        v = Verifier()
        assert v.admit(raw, NOW) is None and v.dropped == {"malformed": 1}
