"""Client side of /gtrac/ledger/2.0.0: submit reports to an anchor, and anti-entropy (pull what this replica
lacks; anchors also push what the other lacks). One short-lived stream per exchange, every read bounded.

    submit {network, reports}      -> ack {admitted, duplicate, pending, dropped}
    anti-entropy                      protocols/ledgersync.py's Initiator, driven here frame by frame
    submit {network, reports}      -> ack                   (anchors only: push what the responder lacks)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, NamedTuple

import trio

from ..ledger import verified_reports
from ..protocols.ledgersync import Initiator, ProtocolError
from .framing import FramedStream
from .host import open_stream
from .protocols import LEDGER

if TYPE_CHECKING:
    from libp2p.abc import IHost

PAGE = 200  # reports per submit frame (each <= 8 KiB signed envelope; frame cap 2 MiB)
READ_TIMEOUT_S = 10.0


class SyncError(Exception):
    pass


class Exchange(NamedTuple):
    pulled: int  # reports pulled that changed this replica
    pushed: int  # reports the responder admitted from our push
    bad: int  # pulled reports that failed to verify
    capped: bool  # this replica lacked more than one session asks for: start the next one now


async def _open(host: IHost, lp) -> FramedStream:
    return FramedStream(await open_stream(host, lp, LEDGER, READ_TIMEOUT_S))


async def _expect(fs: FramedStream, kind: str) -> dict:
    got, body = await fs.read(READ_TIMEOUT_S)
    if got == "error":
        raise SyncError(f"{body['code']}: {body['message']}")
    if got != kind:
        raise SyncError(f"expected {kind}, got {got}")
    return body


async def submit(host: IHost, lp, network: str, raws: list[bytes]) -> dict:
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


async def ping(host: IHost, lp, network: str) -> tuple[float, float | None]:
    """An empty submission, answered with the anchor's clock: (round trip s, the anchor's clock minus ours at
    the midpoint, None from an anchor that does not say its clock). Raises like submit."""
    fs = await _open(host, lp)
    try:
        t0 = time.time()
        await fs.send("submit", {"network": network, "reports": []}, READ_TIMEOUT_S)
        ack = await _expect(fs, "ack")
        t1 = time.time()
    finally:
        await fs.close()
    return t1 - t0, (ack["now"] - (t0 + t1) / 2) if "now" in ack else None


async def anti_entropy(host: IHost, lp, network: str, replica, ingest, push: bool,
                       epoch_signers: set[str], adopt=None, meter: dict | None = None,
                       revoked: dict[str, float] | None = None) -> Exchange:
    """One exchange with the anchor `lp` for `replica` (a replica.Replica); every pulled report is verified
    (unless the replica holds it or is verifying it on another path: Replica.claim), `ingest(reports)` merges and
    persists them; a later checkpoint the anchor offers, certified by a quorum of `epoch_signers` (the
    keyring), is handed to `adopt(checkpoint, proof)` first. `meter["bytes"]` (if given) adds the session's
    bytes both ways.

    Pages of reports are verified in a worker thread (the signature check is most of their cost, and it
    releases the GIL) while the next page is read; they are merged here, in order, on the event loop (the
    ledger's one owner)."""
    fs = await _open(host, lp)
    pulled = pushed = bad = 0
    machine = Initiator(replica.ledger, network, keyring=epoch_signers if adopt is not None else None)

    async def verify_and_ingest(pages) -> None:
        nonlocal pulled, bad
        async with pages:
            async for raws in pages:
                fresh = replica.claim(raws)
                try:
                    good, n_bad = await trio.to_thread.run_sync(verified_reports, fresh, network, epoch_signers,
                                                                None, revoked)
                    bad += n_bad
                    pulled += len(await ingest(good))
                finally:
                    replica.release(fresh)

    try:
        try:
            async with trio.open_nursery() as nursery:
                pages_in, pages = trio.open_memory_channel(2)
                nursery.start_soon(verify_and_ingest, pages)
                await _drive(fs, machine, pages_in, adopt)
        except BaseExceptionGroup as eg:  # one failure in the session's nursery: raise it as itself
            if len(eg.exceptions) == 1 and isinstance(eg.exceptions[0], Exception):
                raise eg.exceptions[0] from None
            raise
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
    return Exchange(pulled, pushed, bad, machine.capped)


async def _drive(fs: FramedStream, machine: Initiator, pages_in, adopt) -> None:
    """Feed the initiator frame by frame; pages of reports go to the verifier task."""
    async with pages_in:
        step = machine.start()
        while True:
            for kind, body in step.send:
                await fs.send(kind, body, READ_TIMEOUT_S)
            if step.adopt is not None and adopt is not None:
                await adopt(*step.adopt)  # before the diff is planned: what it folded is pruned first
            if step.ingest:
                await pages_in.send(step.ingest)
            if step.done:
                return
            kind, body = await fs.read(READ_TIMEOUT_S)
            if kind == "error":
                raise SyncError(f"{body['code']}: {body['message']}")
            try:
                step = machine.receive(kind, body)
            except ProtocolError as e:
                raise SyncError(f"anchor broke the sync protocol: {e}") from None
