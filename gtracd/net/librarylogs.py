"""libp2p's own log records: counted by logger and level, printed only at `--log-level debug`.

Importing libp2p clears the "libp2p" logger's handlers and stops propagation, so its records (one ERROR per
failed redial of a dead peer, for instance) fell through to Python's last-resort handler and reached the
user's terminal. A counting handler takes them instead; `gtracd status` shows the counts. Building a host
calls this again (libp2p modules imported later may pin their own levels).
"""

from __future__ import annotations

import logging

LIBRARY_LOGS: dict[str, int] = {}


class _Count(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        key = f"{record.name.removeprefix('libp2p.')}:{record.levelname.lower()}"
        LIBRARY_LOGS[key] = LIBRARY_LOGS.get(key, 0) + 1


def count_library_logs(debug: bool = False) -> None:
    import libp2p  # noqa: F401  (its import resets the "libp2p" logger: configure it after)

    lg = logging.getLogger("libp2p")
    lg.handlers.clear()
    lg.addHandler(_Count())
    level = logging.DEBUG if debug else logging.WARNING
    lg.setLevel(level)
    lg.propagate = debug
    for name, child in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(child, logging.Logger) and child.level:
            child.setLevel(level)  # some libp2p modules pin themselves to INFO
