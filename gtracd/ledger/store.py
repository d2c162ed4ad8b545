"""Durable, append-only report log: 4-byte big-endian length + the reporter-signed envelope bytes.

`append` writes and fsyncs before returning, so a caller that acknowledges after it never loses an
acknowledged report. `load` streams the file (a 1 MiB window, never the whole file) and verifies every record
(schema + signature). A corrupt record or length header in the middle is counted and skipped by
resynchronising on the next valid record (a position whose header frames a record that verifies), so it
never costs the records after it; only a tail with no valid record in it (a crash mid-append) is cut.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from ..errors import DecodeError
from ..wire.codec import packb
from .crdt import Report
from .signed import verified_report

_HDR = struct.Struct(">I")
MAX_RECORD = 64 * 1024
MIN_RECORD = 16
CHUNK = 1 << 20
# every envelope is the same msgpack map (canonical: sorted keys, so it starts with its first key's bytes): a
# cheap filter for resynchronisation candidates (a candidate must still verify, signature included)
ENVELOPE_PREFIX = packb({"v": 0, "kind": "", "from": b"", "seq": 0, "ts": 0.0, "body": {}, "sig": b""})[:6]


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


class ReportLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0  # corrupt spans skipped on load (a bad record, or a run of bad bytes up to a good one)
        self.skipped_bytes = 0
        self.torn_bytes = 0
        self._f = None
        self._lock = threading.Lock()  # appends run in worker threads; close() may come from the event loop

    def load(self) -> list[Report]:
        return list(self.records())

    def records(self):
        """Stream the verified reports in file order (see the module doc); cuts a torn tail at the end."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            w = _Window(f, size)
            i = good_end = 0
            bad_from: int | None = None
            while i + 4 <= size:
                rec = _record_at(w, i, size)
                if rec is None and bad_from is None:  # a bad record whose header still frames it: skip it whole
                    n = _HDR.unpack(w.get(i, 4))[0]
                    nxt = i + 4 + n
                    if MIN_RECORD <= n <= MAX_RECORD and (nxt == size or (nxt < size and _record_at(w, nxt, size))):
                        self.corrupt += 1
                        self.skipped_bytes += 4 + n
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
                new = not self.path.exists()
                self._f = open(self.path, "ab")
                if new:
                    _fsync_dir(self.path.parent)
            self._f.write(b"".join(_HDR.pack(len(r)) + r for r in raws))
            self._f.flush()
            os.fsync(self._f.fileno())

    def rewrite(self, raws: list[bytes]) -> None:
        """Replace the whole log atomically (a small outbox after acknowledgements)."""
        self.close()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(_HDR.pack(len(r)) + r for r in raws))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)

    def close(self) -> None:
        with self._lock:
            if self._f is not None:
                self._f.close()
                self._f = None


def _record_at(w: _Window, i: int, size: int) -> tuple[Report, int] | None:
    """The verified report framed at offset i and the offset after it, or None."""
    (n,) = _HDR.unpack(w.get(i, 4))
    if not MIN_RECORD <= n <= MAX_RECORD or i + 4 + n > size:
        return None
    raw = w.get(i + 4, n)
    if not raw.startswith(ENVELOPE_PREFIX):
        return None
    try:
        return verified_report(raw, None, None), i + 4 + n  # our own admitted records
    except DecodeError:
        return None


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
