"""The benchmarks' outputs: ``results.json``, PNG plots (matplotlib, Agg) and a table.

Plots:

* ``ratios.png``: every ratio figure as a bar, its target as a mark, green when met;
* ``b4_rss_vs_rows.png``: peak RSS against the dataset's rows, tfstream vs arrays in memory;
* ``b5_padding.png``: padding efficiency, plain padded vs bucketed, per dataset, and the
  genes LSTM epoch times.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping, Optional

RESULTS_NAME = "results.json"


def write_json(results: Mapping[str, Any], out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, RESULTS_NAME)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, path)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ratios(benchmarks: Mapping[str, Any], path: str) -> str:
    plt = _pyplot()
    rows = [(f"{name}: {f['name']}", f) for name, r in benchmarks.items() if r.get("status") == "ok"
            for f in r["figures"] if f["unit"] == "ratio"]
    fig, ax = plt.subplots(figsize=(11, 0.5 * max(len(rows), 1) + 1.2))
    for i, (label, f) in enumerate(rows):
        ax.barh(i, f["value"], color="tab:green" if f["met"] else "tab:red", alpha=0.8)
        ax.plot([f["target"], f["target"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
        ax.text(f["value"], i, f"  {f['value']:.2f} ({f['op']} {f['target']:g})", va="center", fontsize=8)
    right = max([max(f["value"], f["target"]) for _, f in rows if math.isfinite(f["value"])] + [1.0])
    ax.set_xlim(0, right * 1.3)  # room for the value labels
    ax.set_yticks(range(len(rows)), [label for label, _ in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio (black mark: target; green: met)")
    ax.set_title("tfstream benchmarks: ratios measured side by side")
    return _save(plt, fig, path)


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rss(series: Mapping[str, Any], path: str, title: str = "B4 peak RSS against dataset size") -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    labels = {"tfstream": "tfstream train (streamed)", "arrays": "NumPy arrays in memory → fit"}
    for kind, s in series.items():
        ax.plot(s["rows"], s["peak_rss_mb"], marker="o", label=labels.get(kind, kind))
    ax.set_xscale("log")
    ax.set_xlabel("rows in the dataset")
    ax.set_ylabel("peak RSS (MB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(plt, fig, path)


def plot_padding(padding: Mapping[str, Any], epoch_seconds: Mapping[str, float], path: str) -> str:
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4))
    names = list(padding)
    width = 0.38
    for j, variant in enumerate(("plain", "bucketed")):
        xs = [i + (j - 0.5) * width for i in range(len(names))]
        left.bar(xs, [padding[n][variant] for n in names], width, label=variant)
    left.axhline(0.85, color="black", linestyle="--", linewidth=1, label="target (bucketed)")
    left.set_xticks(range(len(names)), names)
    left.set_ylim(0, 1)
    left.set_ylabel("real ÷ padded time steps")
    left.set_title("B5 padding efficiency")
    left.legend(fontsize=8, loc="lower right")
    variants = list(epoch_seconds)
    right.bar(variants, [epoch_seconds[v] for v in variants], color=["tab:blue", "tab:orange"][:len(variants)])
    right.set_ylabel("seconds")
    right.set_title("B5 genes: LSTM epoch time")
    return _save(plt, fig, path)


def write_plots(benchmarks: Mapping[str, Any], out_dir: str) -> dict[str, str]:
    """Every plot the results allow; returns plot name → path."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {"ratios": plot_ratios(benchmarks, os.path.join(out_dir, "ratios.png"))}
    b4 = benchmarks.get("B4", {})
    if b4.get("status") == "ok":
        paths["b4_rss_vs_rows"] = plot_rss(b4["plots"]["rss_vs_rows"], os.path.join(out_dir, "b4_rss_vs_rows.png"))
    b5 = benchmarks.get("B5", {})
    if b5.get("status") == "ok":
        paths["b5_padding"] = plot_padding(b5["plots"]["padding"], b5["plots"]["genes_epoch_seconds"],
                                           os.path.join(out_dir, "b5_padding.png"))
    return paths


def _value(f: Mapping[str, Any]) -> str:
    v = f["value"]
    if not math.isfinite(v):
        return str(v)
    if f["unit"] == "count":
        return f"{v:.0f}"
    if f["unit"] == "MB":
        return f"{v:,.1f} MB"
    if f["unit"] == "s":
        return f"{v:.2f} s"
    return f"{v:.3f}"


def format_table(benchmarks: Mapping[str, Any], *, terminal: Optional[bool] = None) -> str:
    """One line per figure: benchmark, figure, value, target, met; then skipped and failed
    ones (drawn by tfstream's one table renderer, `tfstream.pipelines.tables`)."""
    from tfstream.pipelines.tables import render_table

    rows = []
    for name, r in benchmarks.items():
        if r.get("status") == "ok":
            for f in r["figures"]:
                unit = {"MB": " MB", "s": " s"}.get(f["unit"], "")
                rows.append([name, f["name"], _value(f), f"{f['op']} {f['target']:g}{unit}", "yes" if f["met"] else "NO"])
        else:
            reason = (r.get("reason") or r.get("error") or "").strip().splitlines()
            rows.append([name, f"{r.get('status')}: {reason[0] if reason else ''}"[:110], "-", "-", "-"])
    return render_table(["bench", "figure", "value", "target", "met"], rows, terminal=terminal)
