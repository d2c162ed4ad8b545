"""Status files: every daemon rewrites <data_dir>/run/<role>-<name>-<short peer id>.json once a second
(atomically); `gtracd status` and `gtracd top` read them (no network access, no key). The one reader and the
one writer of that format."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gtracd.config import Settings


def status_dir(settings: Settings) -> Path:
    return settings.home / "run"


def status_file(settings: Settings, role: str, name: str, peer_id: str) -> Path:
    """A daemon's status slot: the short peer id in it, so two daemons never share one, even with one name."""
    return status_dir(settings) / f"{role}-{name}-{peer_id[-8:]}.json"


def write_status(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def collect(settings: Settings, name: str | None = None) -> list[dict]:
    d = status_dir(settings)
    out = []
    for f in sorted(d.glob("*.json")) if d.exists() else []:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if name and name not in (f.stem, doc.get("name"), f"{doc.get('role')}-{doc.get('name')}"):
            continue
        age = time.time() - doc.get("written_at", 0)
        doc["stale"] = not _alive(int(doc.get("pid", -1))) or age > 10
        doc["age_s"] = round(age, 1)
        out.append(doc)
    return out
