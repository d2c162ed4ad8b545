"""The paper's figures from a sweep's outputs (matplotlib: `pip install 'gtracd[lab]'`).

fig3_ssr.png        SSR per mode and target length, 95 % Wilson bars           (paper Fig. 3)
fig4_latency.png    per-token latency of successful requests, per mode/length  (Fig. 4)
fig5_chains.png     chain-length distribution per mode                          (Fig. 5)
fig6_landscape.png  trust vs estimated latency of the peers each mode selected  (Fig. 6)
fig7_selection.png  selection time vs network size (`gtracd bench routing`)     (Fig. 7)
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..routing.timing import run
from .logs import chain_ids, logs, read_csv  # noqa: E402

COLORS = {"g-trac": "#1b9e77", "sp": "#d95f02", "mr": "#7570b3", "larac": "#e7298a", "naive": "#66a61e"}


def _note(fig, summary: dict) -> None:
    fig.text(0.99, 0.01, f"{summary.get('peers', '?')} peers, time scale {summary.get('time_scale', '?')}, "
             f"{summary.get('requests', '?')} requests per cell", ha="right", va="bottom", fontsize=7, color="0.4")


def _save(fig, path: Path, summary: dict | None) -> Path:
    if summary is not None:
        _note(fig, summary)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def fig_ssr(out: Path, summary: dict) -> Path:
    modes = list(summary["modes"])
    lengths = sorted({int(k) for m in modes for k in summary["modes"][m]})
    fig, ax = plt.subplots(figsize=(7, 3.6))
    w = 0.8 / max(1, len(modes))
    for j, m in enumerate(modes):
        xs, ys, lo, hi = [], [], [], []
        for i, L in enumerate(lengths):
            c = summary["modes"][m].get(str(L))
            if not c:
                continue
            xs.append(i + (j - (len(modes) - 1) / 2) * w)
            ys.append(c["ssr"] * 100)
            lo.append(max(0.0, c["ssr"] - c["wilson_lo"]) * 100)  # float rounding can put a bound past the rate
            hi.append(max(0.0, c["wilson_hi"] - c["ssr"]) * 100)
        ax.bar(xs, ys, w, yerr=[lo, hi], capsize=2, label=m, color=COLORS.get(m))
    ax.set_xticks(range(len(lengths)), [f"{L} tokens" for L in lengths])
    ax.set_ylabel("service success rate (%)")
    ax.set_ylim(0, 105)
    ax.legend(ncol=len(modes), fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return _save(fig, out / "fig3_ssr.png", summary)


def _traces(out: Path) -> dict[str, dict[str, list[float]]]:
    """mode -> target length -> per-token latencies of successful requests (from the reference's logs)."""
    reqs = {}
    for f in logs(out, "requests_"):
        for r in read_csv(f):
            reqs[r["request_id"]] = (r["mode"], r["target_new_tokens"])
    got: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for f in logs(out, "distributed_trace_"):
        for r in read_csv(f):
            m = reqs.get(r["trace_id"])
            if m:
                got[m[0]][m[1]].append(float(r["e2e_latency_ms"]))
    return got


def fig_latency(out: Path, summary: dict) -> Path:
    data = _traces(out)
    modes = [m for m in summary["modes"] if m in data]
    lengths = sorted({int(k) for m in summary["modes"] for k in summary["modes"][m]})
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.4), squeeze=False, sharey=True)
    for ax, L in zip(axes[0], lengths, strict=True):
        series = [data[m].get(str(L), []) for m in modes]
        keep = [(m, s) for m, s in zip(modes, series, strict=True) if s]
        if keep:
            b = ax.boxplot([s for _, s in keep], showfliers=False, patch_artist=True)
            for patch, (m, _) in zip(b["boxes"], keep, strict=True):
                patch.set_facecolor(COLORS.get(m, "0.7"))
            ax.set_xticks(range(1, len(keep) + 1), [m for m, _ in keep], fontsize=8)
        ax.set_title(f"{L} tokens", fontsize=9)
    axes[0][0].set_ylabel("per-token latency (ms), successful requests")
    return _save(fig, out / "fig4_latency.png", summary)


def fig_chains(out: Path, summary: dict) -> Path:
    lens: dict[str, list[int]] = defaultdict(list)
    for f in logs(out, "requests_"):
        for r in read_csv(f):
            if chain_ids(r):
                lens[r["mode"]].append(len(chain_ids(r)))
    modes = [m for m in summary["modes"] if m in lens]
    allv = sorted({v for m in modes for v in lens[m]})
    fig, ax = plt.subplots(figsize=(7, 3.4))
    w = 0.8 / max(1, len(modes))
    for j, m in enumerate(modes):
        n = len(lens[m])
        ax.bar([v + (j - (len(modes) - 1) / 2) * w for v in allv], [100 * lens[m].count(v) / n for v in allv], w,
               label=m, color=COLORS.get(m))
    ax.set_xlabel("chain length (hops)")
    ax.set_ylabel("requests (%)")
    ax.set_xticks(allv)
    ax.legend(fontsize=8)
    return _save(fig, out / "fig5_chains.png", summary)


def fig_landscape(out: Path, summary: dict, length: int | None = None) -> Path:
    pts: dict[str, list[tuple[float, float]]] = defaultdict(list)
    lengths = sorted({int(k) for m in summary["modes"] for k in summary["modes"][m]})
    length = length or (50 if 50 in lengths else lengths[len(lengths) // 2])
    for f in logs(out, "selected_"):
        for r in read_csv(f):
            if int(r["target_new_tokens"]) == length:
                pts[r["mode"]].append((float(r["lat_ewma_ms"]), float(r["trust"])))
    modes = [m for m in summary["modes"] if m in pts]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(2.6 * max(1, len(modes)), 3.0), squeeze=False,
                             sharey=True, sharex=True)
    for ax, m in zip(axes[0], modes, strict=False):
        xs, ys = zip(*pts[m], strict=True)
        ax.scatter(xs, ys, s=6, alpha=0.35, color=COLORS.get(m))
        ax.axhline(summary.get("settings", {}).get("trust_floor", 0.96), color="0.5", lw=0.8, ls="--")
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("estimated latency (ms)", fontsize=8)
    axes[0][0].set_ylabel("trust at selection")
    fig.suptitle(f"peers selected, {length}-token tasks", fontsize=9)
    return _save(fig, out / "fig6_landscape.png", summary)


def fig_selection(out: Path, summary: dict, rows: list[dict] | None = None) -> Path:
    if rows is None:
        rows = run(sizes=(36, 112, 336, 1_000, 10_000))
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for m in dict.fromkeys(r["mode"] for r in rows):
        rs = sorted((r for r in rows if r["mode"] == m), key=lambda r: r["peers"])
        ax.plot([r["peers"] for r in rs], [r["p50_ms"] for r in rs], marker="o", ms=3, label=m, color=COLORS.get(m))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("peers")
    ax.set_ylabel("selection time p50 (ms)")
    ax.legend(fontsize=8)
    fig.text(0.99, 0.01, "gtracd bench routing, this machine", ha="right", va="bottom", fontsize=7, color="0.4")
    return _save(fig, out / "fig7_selection.png", None)


def draw_all(out: Path, summary: dict) -> list[Path]:
    return [fig_ssr(out, summary), fig_latency(out, summary), fig_chains(out, summary),
            fig_landscape(out, summary), fig_selection(out, summary)]
