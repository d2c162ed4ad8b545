"""Reports as they travel and rest: the reporter-signed envelope bytes, checked before anything trusts them.

Two kinds live in the ledger: `trust_report` (any seeker signs one) and `ledger_epoch` (accepted only when a
keyring anchor signed it: `epoch_signers`, the peer ids allowed; None only for the replica's own log, which
holds nothing it did not admit).
"""

from __future__ import annotations

from ..errors import DecodeError
from ..identity import peer_id_from_public
from ..wire.codec import unpackb
from ..wire.envelope import Envelope, decode_envelope
from ..wire.limits import DEFAULT_LIMITS
from .crdt import Report

LEDGER_KINDS = ("trust_report", "ledger_epoch")


def verified_report(raw: bytes, network: str | None, epoch_signers: set[str] | frozenset[str] | None,
                    revoked: dict[str, float] | None = None) -> Report:
    """Schema, kind, the signature, the network (when given) and who may sign epochs; raises DecodeError.
    `revoked` (peer id -> since; gtracd.keyring): an epoch a revoked anchor signed before `since` still
    verifies here — callers pass it only for what keyring anchors deliver (a pull, anti-entropy, a delta),
    never for what a key submits itself."""
    env = decode_envelope(bytes(raw))
    if env.kind not in LEDGER_KINDS:
        raise DecodeError("not a trust report", "reports[]")
    if not env.signature_ok():
        raise DecodeError("bad signature", "reports[].sig")
    if network is not None and env.body["network"] != network:
        raise DecodeError("another network's report", "reports[].network")
    if env.kind == "ledger_epoch" and epoch_signers is not None and env.sender_id not in epoch_signers \
            and not signed_before_revocation(env.sender_id, env.ts, revoked):
        raise DecodeError("a ledger epoch not signed by a keyring anchor", "reports[].from")
    return Report.from_envelope(env)


def signed_before_revocation(pid: str, ts: float, revoked: dict[str, float] | None) -> bool:
    return bool(revoked) and pid in revoked and ts < revoked[pid]


def revoked_after(r: Report, revoked: dict[str, float]) -> bool:
    """An epoch record a revoked anchor signed at or after its revocation time: dropped everywhere."""
    if r.outcome != "epoch" or not revoked:
        return False
    pid = peer_id_from_public(r.reporter)
    return pid in revoked and r.ts >= revoked[pid]


def verified_reports(raws, network: str | None, epoch_signers: set[str] | frozenset[str],
                     held=None, revoked: dict[str, float] | None = None) -> tuple[list[Report], int]:
    """The reports that verify, and how many did not. With `held` (a Ledger), raws it already holds byte for
    byte are left out before any check (a sync's pages and another anchor's push often carry the same
    reports: the signature check is most of a report's cost)."""
    good, bad = [], 0
    for raw in raws:
        if held is not None and is_held(held, raw):
            continue
        try:
            good.append(verified_report(raw, network, epoch_signers, revoked))
        except DecodeError:
            bad += 1
    return good, bad


def held_report(ledger, raw: bytes) -> Report | None:
    """The report the ledger holds as exactly these bytes (same reporter, seq and signed envelope), or None."""
    try:
        d = unpackb(raw, DEFAULT_LIMITS.max_envelope)
        r = ledger.get(bytes(d["from"]), d["seq"])
    except (DecodeError, KeyError, TypeError, ValueError):
        return None
    return r if r is not None and r.raw == raw else None


def is_held(ledger, raw: bytes) -> bool:
    return held_report(ledger, raw) is not None


def stored_report(raw: bytes) -> Report:
    """A record of this replica's own log whose checksum matched: the bytes it verified before appending them
    (ledger.store), so neither the schema nor the signature is checked again. DecodeError if the bytes are
    not a ledger record at all (a bug, or corruption the checksum missed)."""
    d = unpackb(raw, DEFAULT_LIMITS.max_envelope)
    try:
        if d["kind"] not in LEDGER_KINDS:
            raise ValueError
        env = Envelope(d["kind"], bytes(d["from"]), int(d["seq"]), float(d["ts"]), d["body"], bytes(d["sig"]),
                       bytes(raw))
        return Report.from_envelope(env)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise DecodeError(f"a stored record is not a ledger report ({type(e).__name__})", "record") from None
