"""Several signed trust reports in one gossip message (pure).

A busy seeker signs a report per request; one gossip message per report cost every receiver the fixed
per-message price of py-libp2p (decode, signed peer record, push, fan-out), which saturated two cores near
15 reports/s network-wide. A batch is a canonical msgpack map {"v": wire version, "reports": [envelope bytes, ...]}:
not signed as a whole (each report inside is signed by its reporter, and checked one by one), so a batch
adds no trust. A message that is not a batch is one envelope, as before.
"""

from __future__ import annotations

from ..errors import DecodeError
from .codec import packb, unpackb
from .limits import KIB
from .versions import WIRE, check_version

BATCH_REPORTS = 64  # reports in one batch
BATCH_BYTES = 512 * KIB  # well under gossip's 1 MiB drop
BATCH_S = 0.25  # how long a seeker gathers reports before gossiping them


def chunks(items: list[bytes], max_items: int, max_bytes: int) -> list[list[bytes]]:
    """Consecutive runs of `items` with at most `max_items` each and at most `max_bytes` of items plus 8 bytes
    of msgpack framing per item (the one chunker of every size-capped batch: report batches, ledger deltas,
    heartbeat batches). An item alone over the cap still gets a run of its own (the caller refuses it)."""
    out, cur, size = [], [], 0
    for it in items:
        if cur and (len(cur) == max_items or size + len(it) + 8 > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(it)
        size += len(it) + 8
    if cur:
        out.append(cur)
    return out


def report_batches(raws: list[bytes]) -> list[bytes]:
    """The reports as batch messages within both caps (a report alone over the byte cap is refused)."""
    for r in raws:
        if len(r) + 64 > BATCH_BYTES:
            raise ValueError(f"a report of {len(r)} bytes does not fit a batch")
    return [packb({"v": WIRE, "reports": c}) for c in chunks(raws, BATCH_REPORTS, BATCH_BYTES - 64)]


def batch_items(data: bytes) -> list[bytes]:
    """The envelopes a gossip message carries: a batch's reports, or the message itself. DecodeError for a
    malformed or oversize batch."""
    obj = unpackb(data, BATCH_BYTES)
    if not isinstance(obj, dict) or "reports" not in obj:
        return [data]
    items = obj["reports"]
    newer = check_version(obj.get("v"), "batch")  # wire.versions: a newer batch's other fields are ignored
    if "v" not in obj or (not newer and set(obj) != {"v", "reports"}):
        raise DecodeError("a report batch is {v, reports: [...]}", "batch")
    if not isinstance(items, list) or not 0 < len(items) <= BATCH_REPORTS or not all(
            isinstance(x, bytes) for x in items):
        raise DecodeError(f"a report batch holds 1..{BATCH_REPORTS} envelopes as bytes", "batch.reports")
    return items
