"""Log lines for people or machines: `human` (one line: time, logger, level, message) or `json` (one object
per line: ts, level, logger, msg, and exc when there is a traceback), to stderr or to a file that rotates by
size (`--log-file`, `--log-max-mib`, `--log-backups`)."""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
import time

FORMATS = ("human", "json")
HUMAN = "%(asctime)s %(name)s %(levelname)s %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; always one line (newlines inside strings are escaped by json)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": round(record.created, 6),
               "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
               "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage(),
               "pid": record.process}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def handler(fmt: str = "human", path: str = "", max_mib: float = 10.0, backups: int = 5) -> logging.Handler:
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: choose {' or '.join(FORMATS)}")
    if path:
        h: logging.Handler = logging.handlers.RotatingFileHandler(path, maxBytes=int(max_mib * 2**20),
                                                                  backupCount=backups, encoding="utf-8")
    else:
        h = logging.StreamHandler(sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(HUMAN))
    return h


def configure(level: str, fmt: str = "human", path: str = "", max_mib: float = 10.0, backups: int = 5) -> None:
    """The root logger at `level` with one handler (replacing any an earlier call installed)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    root.addHandler(handler(fmt, path, max_mib, backups))
    root.setLevel(level.upper())
