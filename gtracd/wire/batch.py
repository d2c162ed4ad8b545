"""Several signed trust reports in one gossip message (pure).

A busy seeker signs a report per request; one gossip message per report cost every receiver the fixed
per-message price of py-libp2p (decode, signed peer record, push, fan-out), which saturated two cores near
15 reports/s network-wide. A batch is a canonical msgpack map {"v": 1, "reports": [envelope bytes, ...]}:
not signed as a whole (each report inside is signed by its reporter, and checked one by one), so a batch
adds no trust. A message that is not a batch is one envelope, as before.
"""

from __future__ import annotations

from ..errors import DecodeError
from .codec import packb, unpackb
from .limits import KIB

BATCH_REPORTS = 64  # reports in one batch
BATCH_BYTES = 512 * KIB  # well under gossip's 1 MiB drop
BATCH_S = 0.25  # how long a seeker gathers reports before gossiping them


def report_batches(raws: list[bytes]) -> list[bytes]:
    """The reports as batch messages within both caps (a report alone over the byte cap is refused)."""
    out, cur, size = [], [], 0
    for r in raws:
        if len(r) + 64 > BATCH_BYTES:
            raise ValueError(f"a report of {len(r)} bytes does not fit a batch")
        if cur and (len(cur) == BATCH_REPORTS or size + len(r) + 8 > BATCH_BYTES - 64):
            out.append(packb({"v": 1, "reports": cur}))
            cur, size = [], 0
        cur.append(r)
        size += len(r) + 8
    if cur:
        out.append(packb({"v": 1, "reports": cur}))
    return out


def batch_items(data: bytes) -> list[bytes]:
    """The envelopes a gossip message carries: a batch's reports, or the message itself. DecodeError for a
    malformed or oversize batch."""
    obj = unpackb(data, BATCH_BYTES)
    if not isinstance(obj, dict) or "reports" not in obj:
        return [data]
    items = obj["reports"]
    if obj.get("v") != 1 or set(obj) != {"v", "reports"}:
        raise DecodeError("a report batch is {v: 1, reports: [...]}", "batch")
    if not isinstance(items, list) or not 0 < len(items) <= BATCH_REPORTS or not all(
            isinstance(x, bytes) for x in items):
        raise DecodeError(f"a report batch holds 1..{BATCH_REPORTS} envelopes as bytes", "batch.reports")
    return items
