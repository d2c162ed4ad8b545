"""`gtracd doctor`: checks this device and says what to fix, one line each (`checks`: files, ports, disk,
model, torch; `probe`: anchors reachable and answering, clock offset). Exit 0 when nothing failed."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import trio

from . import checks, probe
from .checks import FAIL, Finding

if TYPE_CHECKING:
    from gtracd.config import Settings

MARK = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def diagnose(s: Settings, role: str | None, network: bool = True) -> list[Finding]:
    found = checks.local(s, role)
    if network:
        found += trio.run(probe.anchors, s)
    return found


def report(found: list[Finding], as_json: bool, out=sys.stdout) -> int:
    failed = sum(1 for f in found if f.status == FAIL)
    if as_json:
        print(json.dumps({"ok": not failed, "checks": [f.json() for f in found]}), file=out)
    else:
        for f in found:
            print(f"{MARK[f.status]}  {f.check:8} {f.message}", file=out)
        print(f"{len(found) - failed} passed, {failed} failed" if failed else f"all {len(found)} checks passed",
              file=out)
    return 1 if failed else 0
