"""Durable, append-only report log: 4-byte big-endian length + the reporter-signed envelope bytes.

`append` writes and fsyncs before returning, so a caller that acknowledges after it never loses an
acknowledged report. `load` verifies every record (schema + signature) and cuts a torn tail left by a crash
mid-write; corrupt records are skipped and counted.
"""

from __future__ import annotations

import os
import struct
import threading
from pathlib import Path

from ..errors import DecodeError
from .crdt import Report
from .signed import verified_report

_HDR = struct.Struct(">I")
MAX_RECORD = 64 * 1024


class ReportLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.corrupt = 0
        self.torn_bytes = 0
        self._f = None
        self._lock = threading.Lock()  # appends run in worker threads; close() may come from the event loop

    def load(self) -> list[Report]:
        out: list[Report] = []
        if not self.path.exists():
            return out
        data = self.path.read_bytes()
        i = good = 0
        while i + 4 <= len(data):
            (n,) = _HDR.unpack_from(data, i)
            if n > MAX_RECORD or i + 4 + n > len(data):
                break
            raw = data[i + 4:i + 4 + n]
            i += 4 + n
            good = i
            try:
                out.append(verified_report(raw, None, None))  # our own admitted records
            except DecodeError:
                self.corrupt += 1
        if good < len(data):  # torn tail from a crash mid-append: cut it so new records stay framed
            self.torn_bytes = len(data) - good
            with open(self.path, "r+b") as f:
                f.truncate(good)
                os.fsync(f.fileno())
        return out

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


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
