"""The sweep's outputs (pure formatting): the G-TRAC reference's three CSV logs, same names and columns,
one more CSV of the peers each request selected (the paper's Fig. 6), and summary.json."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from .stats import mean, median, percentile, wilson

REQUEST_COLUMNS = ("run_id", "ts_unix", "mode", "engine", "model", "request_id", "prompt_len_tokens",
                   "target_new_tokens", "generated_new_tokens", "completed", "request_success", "request_e2e_ms",
                   "selection_overhead_ms", "repair_used", "repair_attempted", "repair_succeeded", "failed_id",
                   "failed_error", "failed_stage", "chain_ids", "chain_layers", "client_rss_mb", "trust_tau",
                   "trust_min_in_chain", "trust_mean_in_chain")
TRUST_COLUMNS = ("run_id", "ts_unix", "mode", "request_id", "node_id", "trust", "lat_ewma_ms", "alive", "layer_start",
                 "layer_end", "in_chain", "failed_id")
TRACE_COLUMNS = ("token_idx", "trace_id", "e2e_latency_ms", "sum_hop_cpu_ms", "sum_hop_wall_ms", "num_hops",
                 "max_hop_rss_mb", "client_rss_mb")
SELECTED_COLUMNS = ("run_id", "mode", "target_new_tokens", "request_id", "node_id", "trust", "lat_ewma_ms")
CHAIN_SEP = "->"  # chain_ids / chain_layers, as the reference writes them


def chain_ids(row: dict) -> list[str]:
    """A request log row's chain (older gtracd logs joined it with ';')."""
    text = row["chain_ids"]
    return [x for x in (text.split(CHAIN_SEP) if CHAIN_SEP in text else text.split(";")) if x]


class CsvLog:
    def __init__(self, path: Path, columns: tuple[str, ...], append: bool = False):
        """`append`: continue a log a resumed sweep kept (the header only if the file is new)."""
        self.path = path
        self.columns = columns
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not (append and path.exists() and path.stat().st_size > 0)
        self._f = open(path, "w" if fresh else "a", newline="")
        self._w = csv.writer(self._f, lineterminator="\n")
        if fresh:
            self._w.writerow(columns)

    def row(self, d: dict) -> None:
        self._w.writerow([_cell(d.get(c, "")) for c in self.columns])

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _cell(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:.4f}"
    if v is None:
        return ""
    return str(v)


def read_csv(path: Path) -> list[dict]:
    """A log, plain or gzipped (results committed to the repository are gzipped)."""
    if str(path).endswith(".gz"):
        with gzip.open(path, "rt", newline="") as f:
            return list(csv.DictReader(f))
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def logs(out: Path, prefix: str) -> list[Path]:
    return sorted([*out.glob(f"{prefix}*.csv"), *out.glob(f"{prefix}*.csv.gz")])


def summarize(requests: list[dict]) -> dict:
    """One (mode, length) cell of summary.json from its request records (the sweep's in-memory records:
    success, token latencies, chain length, selection ms, repair used, tokens match)."""
    n = len(requests)
    ok = [r for r in requests if r["success"]]
    lo, hi = wilson(len(ok), n)
    per_token = [ms for r in ok for ms in r["token_ms"]]
    return {"requests": n, "successes": len(ok), "ssr": len(ok) / n if n else 0.0, "wilson_lo": lo, "wilson_hi": hi,
            "token_latency_ms_mean": mean(per_token), "token_latency_ms_p50": percentile(per_token, 50),
            "token_latency_ms_p99": percentile(per_token, 99),
            "chain_len_median": median([float(r["chain_len"]) for r in requests if r["chain_len"]]),
            "selection_ms_p50": percentile([r["selection_ms"] for r in requests if r["selection_ms"] is not None], 50),
            "repairs": sum(1 for r in requests if r["repairs"]),
            "tokens_match": sum(1 for r in ok if r["tokens_match"])}


def markdown_table(summary: dict) -> str:
    """summary.json as a Markdown table (docs/experiments.md)."""
    def f(v, spec=".1f"):
        return "–" if v is None else format(v, spec)

    out = ["| mode | tokens | SSR | 95 % Wilson | per-token p50 ms | mean | p99 | chain (median) | repaired | "
           "selection p50 ms | tokens match |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m, cells in summary["modes"].items():
        for L, c in cells.items():
            out.append(f"| {m} | {L} | {c['successes']}/{c['requests']} ({c['ssr']:.0%}) | "
                       f"{c['wilson_lo']:.2f}–{c['wilson_hi']:.2f} | {f(c['token_latency_ms_p50'])} | "
                       f"{f(c['token_latency_ms_mean'])} | {f(c['token_latency_ms_p99'])} | {f(c['chain_len_median'], 'g')} | "
                       f"{c['repairs']} | {f(c['selection_ms_p50'], '.3f')} | {c['tokens_match']}/{c['successes']} |")
    return "\n".join(out) + "\n"
