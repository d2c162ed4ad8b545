"""Signed envelopes for control traffic (gossip, anchor streams).

Wire form: msgpack map {v, kind, from, seq, ts, body, sig}. The Ed25519 signature covers
DOMAIN || canonical msgpack of [v, kind, from, seq, ts, body]. `v` is the wire version it was written in
(wire.versions: a newer peer's fields this build does not know are left out of `body` and kept in
`signed_body`, which the signature covers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import DecodeError, Oversize
from ..identity import Identity, peer_id_from_public, verify
from .codec import packb, unpackb
from .kinds import ENVELOPE_KINDS
from .limits import DEFAULT_LIMITS, Limits
from .schema import F, check_map
from .versions import WIRE, check_version, preview_body

DOMAIN = b"gtracd/envelope/1\x00"  # the major line (wire.versions); minor versions share it
_OUTER = {
    "v": F("int"),
    "kind": F("str", maxlen=64),
    "from": F("bin", minlen=32, maxlen=32),
    "seq": F("int", lo=0, hi=2**63 - 1),
    "ts": F("float", lo=0.0, hi=1e11),
    "sig": F("bin", minlen=64, maxlen=64),
}


@dataclass(frozen=True)
class Envelope:
    kind: str
    sender: bytes  # 32-byte Ed25519 public key
    seq: int
    ts: float
    body: dict
    sig: bytes
    raw: bytes = b""  # the bytes it was decoded from / encoded to
    v: int = WIRE  # the wire version it was written in
    signed_body: dict | None = None  # the body as signed, when a newer peer's fields were left out of `body`

    @property
    def sender_id(self) -> str:
        return peer_id_from_public(self.sender)

    def signed_bytes(self) -> bytes:
        body = self.body if self.signed_body is None else self.signed_body
        return signing_bytes(self.kind, self.sender, self.seq, self.ts, body, self.v)

    def signature_ok(self) -> bool:
        return verify(self.sender, self.sig, self.signed_bytes())


def signing_bytes(kind: str, sender: bytes, seq: int, ts: float, body: dict, v: int = WIRE) -> bytes:
    return DOMAIN + packb([v, kind, bytes(sender), seq, float(ts), body])


def encode_envelope(ident: Identity, kind: str, body: dict, seq: int, ts: float,
                    limits: Limits = DEFAULT_LIMITS) -> Envelope:
    if kind not in ENVELOPE_KINDS:
        raise DecodeError(f"unknown kind {kind!r}", "kind")
    body = check_map(ENVELOPE_KINDS[kind], body)  # never send what a receiver would refuse
    _cross_checks(kind, body)
    sent = preview_body(body)
    pub = ident.public
    sig = ident.sign(signing_bytes(kind, pub, seq, ts, sent))
    raw = packb({"v": WIRE, "kind": kind, "from": pub, "seq": seq, "ts": float(ts), "body": sent, "sig": sig})
    cap = limits.envelope_cap(kind)
    if len(raw) > cap:
        raise Oversize(kind, len(raw), cap, "body")
    return Envelope(kind, pub, seq, float(ts), body, sig, raw, WIRE, None if sent is body else sent)


def decode_envelope(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Envelope:
    """Structure + schema only. Signature, replay and skew are the Verifier's job."""
    obj = unpackb(data, limits.max_envelope)
    if not isinstance(obj, dict):
        raise DecodeError("envelope must be a map", "envelope")
    if "body" not in obj:
        raise DecodeError("missing required field", "envelope.body")
    newer = check_version(obj.get("v"), "envelope")
    hdr = check_map(_OUTER, {k: v for k, v in obj.items() if k != "body"}, "envelope", lenient=newer)
    kind = hdr["kind"]
    if kind not in ENVELOPE_KINDS:
        if newer:  # a kind added after this build: not ours to judge
            raise UnknownKind(kind)
        raise DecodeError(f"{kind!r} is not one of {', '.join(ENVELOPE_KINDS)}", "envelope.kind")
    cap = limits.envelope_cap(kind)
    if len(data) > cap:
        raise Oversize(kind, len(data), cap, "envelope")
    body = check_map(ENVELOPE_KINDS[kind], obj["body"], "body", lenient=newer)
    _cross_checks(kind, body)
    signed = obj["body"] if newer else None  # exactly what the newer peer signed, fields we do not know included
    env = Envelope(kind, bytes(hdr["from"]), hdr["seq"], float(hdr["ts"]), body, bytes(hdr["sig"]), bytes(data),
                   hdr["v"], signed)
    if newer:
        env.signed_bytes()  # what the signature covers must encode (DecodeError now, not at the signature check)
    return env


class UnknownKind(DecodeError):
    """A newer peer's message of a kind this build does not know (counted as `unknown_kind`)."""

    def __init__(self, kind: str):
        super().__init__(f"a kind this gtracd does not know yet: {kind!r}", "envelope.kind")


def _cross_checks(kind: str, body: dict) -> None:
    if kind == "heartbeat":  # a joining worker has no range yet; every other state hosts one
        total = body.get("total_layers") or body["end"]
        if body.get("state") == "joining":
            if body["start"] != 0 or body["end"] != 0:
                raise DecodeError("a joining worker announces no range (0:0)", "body.end")
        elif not 0 <= body["start"] < body["end"] <= total:
            raise DecodeError("need start < end <= total_layers", "body.end")
        t = body.get("target")
        if t is not None and not 0 <= t[0] < t[1] <= total:
            raise DecodeError("need target start < end <= total_layers", "body.target")
    if kind == "trust_report":
        if len(body["latency_ms"]) > len(body["chain"]):
            raise DecodeError("more latencies than hops", "body.latency_ms")
        if body["culprit"] >= len(body["chain"]):
            raise DecodeError("culprit index outside the chain", "body.culprit")
        if body["outcome"] == "success" and (body["culprit"] != -1 or len(body["latency_ms"]) != len(body["chain"])):
            raise DecodeError("a success names no culprit and has a latency per hop", "body.culprit")
        ev = body.get("evidence")
        if body["outcome"] == "wrong_output":  # admitted only with its evidence (seeker/spotcheck.py)
            if ev is None:
                raise DecodeError("a wrong_output report carries evidence (input and output digests)", "body.evidence")
            if len(body["chain"]) != 3 or len(set(body["chain"])) != 3 or body["culprit"] != 0:
                raise DecodeError("a wrong_output chain is [accused, witness, arbiter], culprit 0", "body.chain")
            accused, witness, arbiter = (bytes(x) for x in ev["outputs"])
            if accused == witness or accused == arbiter:
                raise DecodeError("the evidence shows no mismatch with the accused's output", "body.evidence")
        elif ev is not None:
            raise DecodeError("only a wrong_output report carries evidence", "body.evidence")


class Signer:
    """Signs envelopes with strictly increasing sequence numbers that also survive restarts
    (seq = max(last + 1, microseconds since the epoch)), and timestamps that never go back while seqs go on
    (a wall clock stepped back holds ts at the last one): seq order is ts order, which ledger checkpoints
    rely on (ledger/checkpoint.Checkpoint.covers)."""

    def __init__(self, ident: Identity, clock=time.time, limits: Limits = DEFAULT_LIMITS):
        self.ident = ident
        self.clock = clock
        self.limits = limits
        self._last = 0
        self._last_ts = 0.0

    def _next(self) -> tuple[int, float]:
        now = self.clock()
        self._last = max(self._last + 1, int(now * 1e6))
        self._last_ts = max(self._last_ts, now)
        return self._last, self._last_ts

    def sign(self, kind: str, body: dict) -> Envelope:
        seq, ts = self._next()
        return encode_envelope(self.ident, kind, body, seq, ts, self.limits)
