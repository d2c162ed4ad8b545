"""Client side of /gtrac/ledger/2.0.0: submit reports to an anchor, and anti-entropy (pull what this replica
lacks; anchors also push what the other lacks). One short-lived stream per exchange, every read bounded.

    submit {network, reports}      -> ack {admitted, duplicate, pending, dropped}
    anti-entropy                      ledger/sync.py's Initiator, driven here frame by frame
    submit {network, reports}      -> ack                   (anchors only: push what the responder lacks)
"""

from __future__ import annotations

from ..ledger import verified_reports
from ..ledger.sync import Initiator, ProtocolError
from .framing import FramedStream
from .host import open_stream
from .protocols import LEDGER

PAGE = 200  # reports per submit frame (each <= 8 KiB signed envelope; frame cap 2 MiB)
READ_TIMEOUT_S = 10.0


class SyncError(Exception):
    pass


async def _open(host, lp) -> FramedStream:
    return FramedStream(await open_stream(host, lp, LEDGER, READ_TIMEOUT_S))


async def _expect(fs: FramedStream, kind: str) -> dict:
    got, body = await fs.read(READ_TIMEOUT_S)
    if got == "error":
        raise SyncError(f"{body['code']}: {body['message']}")
    if got != kind:
        raise SyncError(f"expected {kind}, got {got}")
    return body


async def submit(host, lp, network: str, raws: list[bytes]) -> dict:
    """Send reports; returns the summed ack. Raises SyncError / StreamClosed / TooSlowError."""
    fs = await _open(host, lp)
    total = {"admitted": 0, "duplicate": 0, "pending": 0, "dropped": {}, "results": []}
    try:
        for i in range(0, len(raws), PAGE):
            await fs.send("submit", {"network": network, "reports": raws[i:i + PAGE]}, READ_TIMEOUT_S)
            ack = await _expect(fs, "ack")
            for k in ("admitted", "duplicate", "pending"):
                total[k] += ack[k]
            total["results"] += ack["results"]
            for k, v in ack["dropped"].items():
                total["dropped"][k] = total["dropped"].get(k, 0) + v
    finally:
        await fs.close()
    return total


async def anti_entropy(host, lp, network: str, ledger, ingest, push: bool,
                       epoch_signers: set[str], adopt=None, meter: dict | None = None) -> tuple[int, int, int]:
    """One exchange with the anchor `lp`; every pulled report is verified, `ingest(reports)` merges and
    persists them; a later checkpoint the anchor offers, certified by a quorum of `epoch_signers` (the
    keyring), is handed to `adopt(checkpoint, proof)` first. Returns (reports pulled, reports pushed, pulled
    reports that failed to verify). `meter["bytes"]` (if given) adds the session's bytes both ways."""
    fs = await _open(host, lp)
    pulled = pushed = bad = 0
    machine = Initiator(ledger, network, keyring=epoch_signers if adopt is not None else None)
    try:
        step = machine.start()
        while True:
            for kind, body in step.send:
                await fs.send(kind, body, READ_TIMEOUT_S)
            if step.adopt is not None and adopt is not None:
                await adopt(*step.adopt)  # before the diff is planned: what it folded is pruned first
            if step.ingest:
                good, n_bad = verified_reports(step.ingest, network, epoch_signers)
                bad += n_bad
                pulled += len(await ingest(good))
            if step.done:
                break
            kind, body = await fs.read(READ_TIMEOUT_S)
            if kind == "error":
                raise SyncError(f"{body['code']}: {body['message']}")
            try:
                step = machine.receive(kind, body)
            except ProtocolError as e:
                raise SyncError(f"anchor broke the sync protocol: {e}") from None
        if push and machine.give:
            raws = [r.raw for r in machine.give]
            for i in range(0, len(raws), PAGE):
                await fs.send("submit", {"network": network, "reports": raws[i:i + PAGE]}, READ_TIMEOUT_S)
                ack = await _expect(fs, "ack")
                pushed += ack["admitted"]
    finally:
        await fs.close()
        if meter is not None:
            meter["bytes"] = meter.get("bytes", 0) + fs.bytes_in + fs.bytes_out
    return pulled, pushed, bad
