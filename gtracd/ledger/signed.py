"""Reports as they travel and rest: the reporter-signed envelope bytes, checked before anything trusts them.

Two kinds live in the ledger: `trust_report` (any seeker signs one) and `ledger_epoch` (accepted only when a
keyring anchor signed it: `epoch_signers`, the peer ids allowed; None only for the replica's own log, which
holds nothing it did not admit).
"""

from __future__ import annotations

from ..errors import DecodeError
from ..wire.envelope import decode_envelope
from .crdt import Report

LEDGER_KINDS = ("trust_report", "ledger_epoch")


def verified_report(raw: bytes, network: str | None, epoch_signers: set[str] | frozenset[str] | None) -> Report:
    """Schema, kind, the signature, the network (when given) and who may sign epochs; raises DecodeError."""
    env = decode_envelope(bytes(raw))
    if env.kind not in LEDGER_KINDS:
        raise DecodeError("not a trust report", "reports[]")
    if not env.signature_ok():
        raise DecodeError("bad signature", "reports[].sig")
    if network is not None and env.body["network"] != network:
        raise DecodeError("another network's report", "reports[].network")
    if env.kind == "ledger_epoch" and epoch_signers is not None and env.sender_id not in epoch_signers:
        raise DecodeError("a ledger epoch not signed by a keyring anchor", "reports[].from")
    return Report.from_envelope(env)


def verified_reports(raws, network: str | None, epoch_signers: set[str] | frozenset[str]) -> tuple[list[Report], int]:
    """The reports that verify, and how many did not."""
    good = []
    for raw in raws:
        try:
            good.append(verified_report(raw, network, epoch_signers))
        except DecodeError:
            pass
    return good, len(raws) - len(good)
