"""Readable tables: a dataset's manifest (`tfstream inspect`) and runs (`tfstream summary`)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

from tfstream.pipelines.manifest import Manifest
from tfstream.transforms.analyzers import length_stats
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


def default_split(manifest: Manifest) -> str:
    """The split whose statistics `tfstream inspect` shows: the training split of the
    job that wrote the dataset (only it carries vocabularies), else ``train``, else the
    first split.

    Example:
        >>> default_split(load_manifest("runs/flights/dataset"))  # doctest: +SKIP
        'train'
    """
    configured = manifest.data.get("options", {}).get("config", {}).get("train", {}).get("train_split")
    for split in (configured, "train"):
        if split in manifest.split_names:
            return split
    return manifest.split_names[0]


def _std(variance: Any) -> Optional[float]:
    return None if variance is None else max(variance, 0.0) ** 0.5


def _moments(stats: Mapping[str, Any]) -> dict[str, Any]:
    """Mean, std, min, p50 and max of a numeric feature, as scalars.

    A vector feature is summarized over the values of all its components (they have
    equal counts, so the pooled variance is the mean variance plus the variance of the
    means); its median cannot be pooled from per-component quantiles, so p50 is None.
    """
    mean, var, q = stats.get("mean"), stats.get("variance"), stats.get("quantiles")
    if not isinstance(mean, list):
        return {"mean": mean, "std": _std(var), "min": stats.get("min"), "max": stats.get("max"),
                "p50": q[5] if q else None}
    k = len(mean)
    grand = sum(mean) / k
    pooled = sum(var) / k + sum((m - grand) ** 2 for m in mean) / k
    return {"mean": grand, "std": _std(pooled), "min": min(stats["min"]), "max": max(stats["max"]), "p50": None}


def _stat_summary(stats: Mapping[str, Any]) -> str:
    kind = stats.get("kind")
    if kind == "categorical":
        # Non-training splits of newer manifests carry neither vocabulary nor num_unique.
        vocabulary = stats.get("vocabulary")
        if vocabulary is None:
            return f"{stats['count']:,} values; no vocabulary for this split"
        head = ", ".join(f"{t} ({n:,})" for t, n in vocabulary[:3])
        return f"{_cell(stats.get('num_unique'))} values; top: {head}"
    if kind == "sequence":
        ln = stats["length"]
        return f"length {ln['min']}..{ln['max']} (mean {ln['mean']:.1f}); {stats['steps']:,} steps"
    if not stats.get("count"):
        return "no values"
    m = _moments(stats)
    if isinstance(stats["mean"], list):
        return f"vector of {len(stats['mean'])}; mean of means {m['mean']:.4g}"
    return f"mean {m['mean']:.4g}, std {m['std']:.4g}, min {m['min']:.4g}, max {m['max']:.4g}"


def _numeric_section(manifest: Manifest, split: str) -> list[str]:
    stats = manifest.statistics(split)
    rows = []
    for f in manifest.schema.features:
        st = stats["features"].get(f.name)
        if f.kind == "numeric" and st is not None:
            name = f"{f.name}[{f.shape[0]}]" if f.shape else f.name
            rows.append(_numeric_row(name, st))
    label = stats.get("label", {})
    if "class_counts" not in label and label:  # a regression target is a number too
        rows.append(_numeric_row(f"{manifest.schema.label.name} (label)", label))
    if not rows:
        return []
    note = [" (a vector feature name[k] is summarized over all the values of its k components)"] \
        if any(f.kind == "numeric" and f.shape for f in manifest.schema.features) else []
    return ["", f"numeric features ({split!r} split)",
            format_table(["feature", "count", "missing", "non-finite", "mean", "std", "min", "p50", "max"],
                         rows)] + note


def _numeric_row(name: str, stats: Mapping[str, Any]) -> list[Any]:
    m = _moments(stats) if stats.get("count") else {}
    # missing and non_finite are absent from older manifests: shown as "-", not as 0.
    return [name, stats.get("count"), stats.get("missing"), stats.get("non_finite"),
            m.get("mean"), m.get("std"), m.get("min"), m.get("p50"), m.get("max")]


def _length_quantiles(length: Mapping[str, Any]) -> list[Any]:
    """p10, p50 and p90 of a sequence length: recorded ones when the manifest has them,
    else from the length histogram (manifests written before quantiles were)."""
    quantiles = length.get("quantiles") or length_stats(length.get("histogram", {}))["quantiles"]
    return [quantiles[i] for i in (1, 5, 9)] if quantiles else [None, None, None]


def _sequence_section(manifest: Manifest, split: str) -> list[str]:
    stats = manifest.statistics(split)["features"]
    rows = []
    for f in manifest.schema.sequence_features:
        st = stats.get(f.name)
        if st is None:
            continue
        ln = st["length"]
        rows.append([f.name, ln["count"], ln["min"], *_length_quantiles(ln), ln["max"], ln["mean"],
                     st.get("steps"), st.get("truncated")])
    if not rows:
        return []
    return ["", f"sequence lengths in steps ({split!r} split)",
            format_table(["feature", "sequences", "min", "p10", "p50", "p90", "max", "mean", "steps", "truncated"],
                         rows)]


def _vocabulary_section(manifest: Manifest, split: str, top: int = 5) -> list[str]:
    stats = manifest.statistics(split)["features"]
    out = []
    for f in manifest.schema.features:
        st = stats.get(f.name)
        if f.kind != "categorical" or st is None:
            continue
        out += ["", f"{f.name}: values {_cell(st.get('count'))}, missing {_cell(st.get('missing'))}, "
                    f"unique {_cell(st.get('num_unique'))}, OOV buckets {_cell(st.get('oov_buckets'))}"]
        vocabulary = st.get("vocabulary")
        if vocabulary is None:
            out.append("  no vocabulary recorded for this split (only the training split has one)")
            continue
        total = st.get("count") or 0
        out.append(format_table(
            ["token", "count", "share"],
            [[t, n, f"{100 * n / total:.1f}%" if total else None] for t, n in vocabulary[:top]],
        ))
    if not out:
        return []
    return ["", f"vocabulary heads ({split!r} split; top {top}, share of the feature's values)"] + out[1:]


def _reason_rows(outcome: str, counts: Mapping[str, int]) -> list[list[Any]]:
    # Keys are "<reason>:<column>", e.g. "missing:dep_delay".
    return [[outcome, *(key.split(":", 1) if ":" in key else (key, None)), n] for key, n in counts.items()]


def _rows_section(source: Mapping[str, Any]) -> list[str]:
    """Dropped and rejected rows by reason, and the quarantine files (the totals are in
    the header's ``rows`` line)."""
    rows = _reason_rows("dropped", source.get("dropped") or {}) + _reason_rows("rejected", source.get("rejected") or {})
    out = ["", "rows left out, by reason", format_table(["outcome", "reason", "column", "rows"], rows)] if rows else []
    files = source.get("quarantine")
    if files:
        kept = (source.get("rows_dropped") or 0) + (source.get("rows_rejected") or 0)
        out += ["", f"quarantine: {_cell(kept)} row(s) as JSON lines ({_cell(source.get('rows_dropped'))} dropped, "
                    f"{_cell(source.get('rows_rejected'))} rejected), in {len(files)} file(s) under the dataset"]
        out += [f"  {path}" for path in files]
    return out


def _drift_section(drift: Optional[Mapping[str, Any]]) -> list[str]:
    if not drift:
        return []
    findings = drift.get("findings") or []
    head = f"drift against {drift.get('against', '-')}: {len(findings)} finding(s)"
    if not findings:
        return ["", head]
    return ["", head, format_table(
        ["feature", "change", "severity", "value", "threshold", "detail"],
        [[d["feature"], d["kind"], d.get("severity"), d.get("value"), d.get("threshold"), d.get("detail")]
         for d in findings],
    )]


def format_manifest(manifest: Manifest, *, train_split: str | None = None) -> str:
    """The manifest as tables: splits, shards, schema, per-feature statistics, vocabulary
    heads, sequence lengths, rows by outcome (dropped, rejected, quarantine), drift, and
    the parse spec (last, so that it can be copied as a whole).

    Fields that older manifests lack (missing counts, quantiles, rejected rows, drift)
    are shown as ``-`` or their section is left out.

    Args:
        manifest: a loaded manifest.
        train_split: the split whose statistics are shown (default: `default_split`).

    Example:
        >>> print(format_manifest(load_manifest("runs/flights/dataset")))  # doctest: +SKIP
        dataset   flights  (runs/flights/dataset)
        ...
    """
    data = manifest.data
    source = data["source"]
    out = [
        f"dataset   {manifest.name}  ({manifest.root})",
        f"written   {data['created_at']}  format v{data['format_version']}  compression {manifest.compression}",
        f"source    {', '.join(f['name'] for f in source['fingerprint']['files'])}  "
        f"sha256 {source['fingerprint']['sha256'][:16]}",
        f"rows      {source['rows_read']:,} read, {source['rows_written']:,} written, "
        f"{source['rows_dropped']:,} dropped"
        + (f", {source['rows_rejected']:,} rejected" if "rows_rejected" in source else "")
        + (" (by reason below)" if source["dropped"] or source.get("rejected") else ""),
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
    split = train_split or default_split(manifest)
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
            format_table(["feature", "kind", "dtype", "shape", "statistics"], rows)]
    out += _numeric_section(manifest, split) + _sequence_section(manifest, split)
    out += _vocabulary_section(manifest, split) + _rows_section(source) + _drift_section(data.get("drift"))
    out += ["", "parse spec (tf.io.parse_example on batches of serialized records)",
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
