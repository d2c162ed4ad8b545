"""Reports as they travel and rest: the reporter-signed envelope bytes, checked before anything trusts them."""

from __future__ import annotations

from ..errors import DecodeError
from ..wire.envelope import decode_envelope
from .crdt import Report


def verified_report(raw: bytes, network: str | None = None) -> Report:
    """Schema, kind, the reporter's signature and (when given) the network; raises DecodeError."""
    env = decode_envelope(bytes(raw))
    if env.kind != "trust_report":
        raise DecodeError("not a trust report", "reports[]")
    if not env.signature_ok():
        raise DecodeError("bad signature", "reports[].sig")
    if network is not None and env.body["network"] != network:
        raise DecodeError("another network's report", "reports[].network")
    return Report.from_envelope(env)


def verified_reports(raws, network: str | None = None) -> tuple[list[Report], int]:
    """The reports that verify, and how many did not."""
    good = []
    for raw in raws:
        try:
            good.append(verified_report(raw, network))
        except DecodeError:
            pass
    return good, len(raws) - len(good)
