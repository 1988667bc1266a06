"""Readable tables: a dataset's manifest (`tfstream inspect`) and runs (`tfstream summary`)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from tfstream.pipelines.manifest import Manifest
from tfstream.transforms.schema import format_parse_spec, length_key


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain-text table; numbers right-aligned.

    Example:
        >>> print(format_table(["a", "n"], [["x", 1], ["yy", 22]]))
        a    n
        --  --
        x    1
        yy  22
    """
    rows = [[_cell(v) for v in row] for row in rows]
    numeric = [all(_is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", "").rstrip("%"))
        return True
    except ValueError:
        return text in ("", "-")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
    return str(value)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _stat_summary(stats: Mapping[str, Any]) -> str:
    kind = stats.get("kind")
    if kind == "categorical":
        head = ", ".join(f"{t} ({n:,})" for t, n in stats["vocabulary"][:3])
        return f"{stats['num_unique']} values; top: {head}"
    if kind == "sequence":
        ln = stats["length"]
        return f"length {ln['min']}..{ln['max']} (mean {ln['mean']:.1f}); {stats['steps']:,} steps"
    if not stats.get("count"):
        return "no values"
    mean, var = stats["mean"], stats["variance"]
    if isinstance(mean, list):
        return f"vector of {len(mean)}; mean of means {sum(mean) / len(mean):.4g}"
    return f"mean {mean:.4g}, std {var ** 0.5:.4g}, min {stats['min']:.4g}, max {stats['max']:.4g}"


def format_manifest(manifest: Manifest, *, train_split: str | None = None) -> str:
    """The manifest as tables: splits, shards, schema with statistics, and the parse spec."""
    data = manifest.data
    source = data["source"]
    out = [
        f"dataset   {manifest.name}  ({manifest.root})",
        f"written   {data['created_at']}  format v{data['format_version']}  compression {manifest.compression}",
        f"source    {', '.join(f['name'] for f in source['fingerprint']['files'])}  "
        f"sha256 {source['fingerprint']['sha256'][:16]}",
        f"rows      {source['rows_read']:,} read, {source['rows_written']:,} written, "
        f"{source['rows_dropped']:,} dropped"
        + (f" ({', '.join(f'{k}: {v:,}' for k, v in source['dropped'].items())})" if source["dropped"] else ""),
        "",
        "splits",
        format_table(
            ["split", "shards", "records", "bytes", "record bytes"],
            [[s, d["num_shards"], d["num_examples"], _size(d["num_bytes"]), _size(manifest.split_bytes(s))]
             for s, d in data["splits"].items()],
        ),
        "",
        "shards",
        format_table(
            ["split", "file", "records", "bytes", "sha256"],
            [[s, sh["file"], sh["records"], _size(sh["bytes"]), sh["sha256"][:12]]
             for s in manifest.split_names for sh in manifest.shards(s)],
        ),
    ]
    split = train_split or manifest.split_names[0]
    stats = manifest.statistics(split)["features"]
    rows = []
    for f in manifest.schema.features:
        rows.append([f.name, f.kind, f.dtype, list(f.shape) if f.shape else "scalar", _stat_summary(stats[f.name])])
        if f.kind == "sequence":
            rows.append([length_key(f.name), "length", "int64", "scalar", "steps in the sequence"])
    label = manifest.schema.label
    label_stats = manifest.statistics(split)["label"]
    if "class_counts" in label_stats:
        summary = ", ".join(f"{k}: {v:,}" for k, v in label_stats["class_counts"].items())
    else:
        summary = f"mean {label_stats.get('mean', 0):.4g}, std {label_stats.get('variance', 0) ** 0.5:.4g}"
    rows.append([label.name, f"label ({label.task})", label.dtype, "scalar", summary])
    out += ["", f"schema (statistics of the {split!r} split)",
            format_table(["feature", "kind", "dtype", "shape", "statistics"], rows),
            "", "parse spec (tf.io.parse_example on batches of serialized records)",
            format_parse_spec(manifest.schema)]
    return "\n".join(out)


def headline(metrics: Mapping[str, Any]) -> tuple[str, Any, Any]:
    """``(metric name, eval value, baseline value)`` of a run's metrics.json: the mean
    squared error for regression (lower is better), the accuracy otherwise."""
    if metrics["task"] == "regression":
        return "mse", metrics["eval"]["loss"], metrics["baseline"]["mse"]
    return "accuracy", metrics["eval"]["accuracy"], metrics["baseline"]["accuracy"]


def format_summary(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> str:
    """One row per run's metrics.json: the eval figure next to its trivial baseline."""
    rows = []
    for name, m in runs:
        metric, value, base = headline(m)
        rows.append([name, m["model"], m["examples"].get("train"), m["examples"].get("eval"), m["epochs_run"],
                     metric, value, base, m["beats_baseline"], m["train_examples_per_second"]])
    return format_table(
        ["run", "model", "train", "eval", "epochs", "metric", "eval value", "baseline", "beats", "train ex/s"], rows
    )
