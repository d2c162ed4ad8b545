"""Stream frames for the inference protocol: msgpack {v, kind, body}, length-prefixed on the stream.

Frames are not individually signed: they travel on a Noise-authenticated libp2p stream, which already
binds them to the remote peer id (see docs/decisions.md). `v` is the wire version the frame was written in
(wire.versions: the lowest version that has every field it carries; a newer peer's fields this build
does not know are left out).
"""

from __future__ import annotations

from ..errors import DecodeError, Oversize
from .codec import packb, unpackb
from .kinds import FRAME_KINDS
from .limits import DEFAULT_LIMITS, Limits
from .schema import check_map, written_version
from .versions import check_version, preview_body, written


def encode_frame(kind: str, body: dict, limits: Limits = DEFAULT_LIMITS, check: bool = False) -> bytes:
    if kind not in FRAME_KINDS:
        raise DecodeError(f"unknown frame kind {kind!r}", "kind")
    if check:
        check_map(FRAME_KINDS[kind], body)
    raw = packb({"v": written(written_version(FRAME_KINDS[kind], body)), "kind": kind, "body": preview_body(body)})
    if len(raw) > limits.frame_cap(kind):
        raise Oversize(f"{kind} frame", len(raw), limits.frame_cap(kind), "body")
    return raw


def decode_frame(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[str, dict]:
    obj = unpackb(data, limits.max_frame)
    if not isinstance(obj, dict) or set(obj) != {"v", "kind", "body"}:
        raise DecodeError("frame must be a map with exactly v, kind, body", "frame")
    newer = check_version(obj["v"], "frame")
    kind = obj["kind"]
    if not isinstance(kind, str) or kind not in FRAME_KINDS:
        raise DecodeError(f"unknown frame kind {kind!r}", "frame.kind")
    if len(data) > limits.frame_cap(kind):
        raise Oversize(f"{kind} frame", len(data), limits.frame_cap(kind), "frame")
    body = check_map(FRAME_KINDS[kind], obj["body"], "body", lenient=newer, version=obj["v"])
    return kind, body
