"""A sweep's progress on disk, so `gtracd lab sweep --resume DIR` continues an interrupted one.

`DIR/sweep.json` holds the sweep's configuration and run id, written before the first request; each finished
(mode, length) cell writes `DIR/cells/MODE_LENGTH.json` (its request records: what summary.json is computed
from) once its last request has been logged. Resuming keeps every finished cell, drops from the logs every row
of the cells that did not finish (and a half-written last line), and re-runs those cells from their first
request, appending to the same logs. File work only; no network.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..errors import UserError
from .logs import REQUEST_COLUMNS, SELECTED_COLUMNS, TRACE_COLUMNS, TRUST_COLUMNS

STATE = "sweep.json"
STATE_VERSION = 1


def cell_path(out: Path, mode: str, length: int) -> Path:
    return out / "cells" / f"{mode}_{length}.json"


def save_state(out: Path, config: dict, run_id: str) -> None:
    _atomic(out / STATE, json.dumps({"version": STATE_VERSION, "run_id": run_id, "config": config}, indent=1))


def load_state(out: Path) -> dict:
    """The interrupted sweep's configuration and run id; UserError if `out` holds no sweep to resume."""
    try:
        state = json.loads((out / STATE).read_text())
    except FileNotFoundError:
        raise UserError(f"--resume {out}: no {STATE} there (not a sweep's output folder, or one from before "
                        f"sweeps could be resumed)") from None
    except (OSError, ValueError) as e:
        raise UserError(f"--resume {out}: unreadable {STATE}: {e}") from None
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or not isinstance(
            state.get("config"), dict) or not isinstance(state.get("run_id"), str):
        raise UserError(f"--resume {out}: {STATE} is not a sweep state this gtracd reads (version "
                        f"{state.get('version') if isinstance(state, dict) else '?'})")
    return state


def save_cell(out: Path, mode: str, length: int, cell: dict) -> None:
    _atomic(cell_path(out, mode, length), json.dumps(cell))


def load_cells(out: Path, modes: list[str], lengths: list[int]) -> dict[tuple[str, int], dict]:
    """The finished cells (a cell file that cannot be read counts as unfinished: it is re-run)."""
    done = {}
    for m in modes:
        for n in lengths:
            try:
                cell = json.loads(cell_path(out, m, n).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(cell, dict) and isinstance(cell.get("records"), list):
                done[(m, n)] = cell
    return done


def prune_logs(out: Path, run_id: str, done: set[tuple[str, int]]) -> int:
    """Keep only the rows of finished cells in the run's logs (a cut last line is dropped too); returns the
    rows dropped."""
    kept_ids: set[str] = set()
    dropped = 0

    def cell_of(row: dict) -> bool:
        try:
            return (row["mode"], int(row["target_new_tokens"])) in done
        except (KeyError, TypeError, ValueError):
            return False

    req = out / f"requests_{run_id}.csv"
    if req.exists():
        dropped += _filter(req, REQUEST_COLUMNS, cell_of)
        with open(req, newline="") as f:
            kept_ids = {r["request_id"] for r in csv.DictReader(f)}
    sel = out / f"selected_{run_id}.csv"
    if sel.exists():
        dropped += _filter(sel, SELECTED_COLUMNS, cell_of)
    trust = out / f"trust_{run_id}.csv"
    if trust.exists():
        dropped += _filter(trust, TRUST_COLUMNS, lambda r: r["request_id"] in kept_ids)
    for tr in out.glob("distributed_trace_*.csv"):
        dropped += _filter(tr, TRACE_COLUMNS, lambda r: r["trace_id"] in kept_ids)
    return dropped


def _filter(path: Path, columns: tuple[str, ...], keep) -> int:
    """Rewrite `path` with the rows `keep` accepts (rows of the wrong width are dropped); returns rows dropped."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    dropped = 0
    with open(path, newline="") as src, open(tmp, "w", newline="") as dst:
        reader = csv.reader(src)
        header = next(reader, None)
        if header is not None and tuple(header) != columns:
            raise UserError(f"--resume: {path.name} has other columns than this gtracd writes")
        w = csv.writer(dst, lineterminator="\n")
        w.writerow(columns)
        for cells in reader:
            if len(cells) == len(columns) and keep(dict(zip(columns, cells, strict=True))):
                w.writerow(cells)
            else:
                dropped += 1
    os.replace(tmp, path)
    return dropped


def _atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
