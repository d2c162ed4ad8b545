"""Durable, append-only report log: the reporter-signed envelope bytes of every report this replica admitted,
each framed with its length and a CRC-32 of its bytes.

    file    = MAGIC, record*
    record  = length (4 bytes, big-endian), crc32(raw) (4 bytes, big-endian), raw (`length` bytes)

`append` writes and fsyncs before returning, so a caller that acknowledges after it never loses an
acknowledged report. `load` streams the file (a 1 MiB window, never the whole file). A record is only ever
appended after its signature verified (admission or sync), so on load a matching checksum is enough: the
bytes are the ones verified then, and the signature is not checked again (at ~0.1 ms a report it was most of
a restart: a month of history holds tens of thousands of reports after its checkpoint). A corrupt record or
header in the middle is counted and skipped by resynchronising on the next valid record (a position whose
header frames bytes with a matching checksum that decode as a report), so it never costs the records after
it; only a tail with no valid record in it (a crash mid-append) is cut.

Logs written before the checksum (no MAGIC: records are length + raw) are read with every signature
verified, then rewritten in this format once (atomically).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

from ..errors import DecodeError
from ..wire.codec import packb, unpackb
from ..wire.envelope import decode_envelope
from .checkpoint import STATE_MAX, Checkpoint, _f, id_of
from .report import Report
from .signed import stored_report, verified_report

MAGIC = b"GTRLOG\x02\n"
_HDR = struct.Struct(">II")  # length, crc32
_HDR_V1 = struct.Struct(">I")  # logs before the checksum: length only
MAX_RECORD = 64 * 1024
MIN_RECORD = 16
CHUNK = 1 << 20
# every envelope is the same msgpack map (canonical: sorted keys, so it starts with its first key's bytes): a
# cheap filter for resynchronisation candidates (a candidate must still have its checksum and decode)
ENVELOPE_PREFIX = packb({"v": 0, "kind": "", "from": b"", "seq": 0, "ts": 0.0, "body": {}, "sig": b""})[:6]


def frame(raw: bytes) -> bytes:
    return _HDR.pack(len(raw), zlib.crc32(raw)) + raw


class _Window:
    """Random access to [offset, offset + n) of a file read forward in chunks; earlier bytes are dropped."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size
        self.base = 0
        self.buf = b""

    def get(self, offset: int, n: int) -> bytes:
        end = min(offset + n, self.size)
        if offset < self.base:  # never needed: the reader only moves forward
            raise ValueError("window moved backwards")
        if end > self.base + len(self.buf):
            keep = self.buf[offset - self.base:] if offset < self.base + len(self.buf) else b""
            self.f.seek(offset + len(keep))
            self.buf = keep + self.f.read(max(CHUNK, end - offset - len(keep)))
            self.base = offset
        return self.buf[offset - self.base:end - self.base]


class _Format:
    """How records are framed and checked: the current one (length + crc32, checksum trusted) or v1 (length
    only, every signature verified)."""

    def __init__(self, current: bool):
        self.current = current
        self.hdr = _HDR if current else _HDR_V1
        self.start = len(MAGIC) if current else 0

    def length(self, w: _Window, i: int) -> int:
        return self.hdr.unpack(w.get(i, self.hdr.size))[0]

    def record_at(self, w: _Window, i: int, size: int) -> tuple[Report, int] | None:
        """The report framed at offset i and the offset after it, or None."""
        head = self.hdr.unpack(w.get(i, self.hdr.size))
        n, at = head[0], i + self.hdr.size
        if not MIN_RECORD <= n <= MAX_RECORD or at + n > size:
            return None
        raw = w.get(at, n)
        if not raw.startswith(ENVELOPE_PREFIX):
            return None
        try:
            if self.current:
                if zlib.crc32(raw) != head[1]:
                    return None
                return stored_report(raw), at + n
            return verified_report(raw, None, None), at + n  # our own admitted records
        except DecodeError:
            return None


class ReportLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0  # corrupt spans skipped on load (a bad record, or a run of bad bytes up to a good one)
        self.skipped_bytes = 0
        self.torn_bytes = 0
        self.migrated = 0  # records rewritten from a log without checksums
        self._f = None
        self._lock = threading.Lock()  # appends run in worker threads; close() may come from the event loop

    def load(self) -> list[Report]:
        got = list(self.records())
        if not self._current():  # a log from before the checksum: rewrite it once, in this format
            self.rewrite([r.raw for r in got])
            self.migrated = len(got)
        return got

    def _current(self) -> bool:
        """Is the file in the current format (or absent or empty, so that it will be)?"""
        try:
            with open(self.path, "rb") as f:
                head = f.read(len(MAGIC))
        except FileNotFoundError:
            return True
        return MAGIC.startswith(head)  # empty, or a magic cut short by a crash (cut on load)

    def records(self):
        """Stream the reports in file order (see the module doc); cuts a torn tail at the end."""
        if not self.path.exists():
            return
        fmt = _Format(self._current())
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            w = _Window(f, size)
            i = good_end = fmt.start if size >= fmt.start else 0  # a magic cut short is a torn tail
            bad_from: int | None = None
            while i + fmt.hdr.size <= size:
                rec = fmt.record_at(w, i, size)
                if rec is None and bad_from is None:  # a bad record whose header still frames it: skip it whole
                    n = fmt.length(w, i)
                    nxt = i + fmt.hdr.size + n
                    if MIN_RECORD <= n <= MAX_RECORD and (nxt == size or (nxt < size and fmt.record_at(w, nxt, size))):
                        self.corrupt += 1
                        self.skipped_bytes += nxt - i
                        i = good_end = nxt
                        continue
                if rec is None:
                    if bad_from is None:
                        bad_from = i
                    i += 1  # resynchronise byte by byte
                    continue
                report, end = rec
                if bad_from is not None:
                    self.corrupt += 1
                    self.skipped_bytes += i - bad_from
                    bad_from = None
                yield report
                i = good_end = end
        if good_end < size:  # no valid record after good_end: a crash mid-append; cut it so appends stay framed
            self.torn_bytes = size - good_end
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                os.fsync(f.fileno())

    def append(self, raws: list[bytes]) -> None:
        if not raws:
            return
        with self._lock:  # a close() racing an append waits for it (it used to null the file mid-write)
            if self._f is None:
                if not self._current():  # appending to a log nobody loaded yet: migrate it first
                    self._rewrite([r.raw for r in self.records()])
                new = not self.path.exists() or self.path.stat().st_size == 0
                self._f = open(self.path, "ab")
                if new:
                    self._f.write(MAGIC)
                    _fsync_dir(self.path.parent)
            self._f.write(b"".join(frame(r) for r in raws))
            self._f.flush()
            os.fsync(self._f.fileno())

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the whole log atomically (after a checkpoint pruned it; a small outbox after
        acknowledgements)."""
        with self._lock:
            self._rewrite(raws)

    def _rewrite(self, raws: list[bytes]) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(MAGIC)
            for i in range(0, len(raws), 4096):
                f.write(b"".join(frame(r) for r in raws[i:i + 4096]))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path, cp: Checkpoint, proof: list[bytes]) -> None:
    """Atomically (tmp, fsync, rename, fsync the directory)."""


    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(packb({"v": 1, "boundary": cp.boundary, "digest": cp.digest, "count": cp.count, "state": cp.state,
                       "proof": list(proof)}))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def load_checkpoint(path) -> tuple[Checkpoint, list[bytes]]:
    """The saved checkpoint and its proof; DecodeError if the file is malformed or its state is not the one
    the proof's signatures name."""
    d = unpackb(path.read_bytes(), STATE_MAX + (1 << 20))
    try:
        cp = Checkpoint(_f(d["boundary"]), bytes(d["digest"]), int(d["count"]), bytes(d["state"]))
        proof = [bytes(x) for x in d["proof"]]
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"checkpoint file {path}: malformed ({type(e).__name__})", "checkpoint") from None

    for raw in proof:
        env = decode_envelope(raw)
        if not env.signature_ok() or env.kind != "ledger_checkpoint" or id_of(env.body) != cp.id:
            raise DecodeError(f"checkpoint file {path}: a signature does not match its state", "checkpoint")
    cp.check()  # the state decodes (and the replica's derivation takes the fold decoded here)
    return cp, proof
