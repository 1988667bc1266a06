"""A dataset's manifest as tables: what `tfstream inspect` prints.

Everything is read from the typed `Manifest`; fields that older manifests lack (missing
counts, quantiles, rejected rows, drift) are shown as ``-``, or their section is left
out. `report_blocks` gives the report as data (headings, lines, tables, preformatted
text); `format_manifest` renders it as text and `html.format_html` as a web page, so the
two show the same figures.

Example:
    >>> text = format_manifest(load_manifest(dataset_dir), terminal=False)
    >>> text.splitlines()[0].startswith("dataset   flights")
    True
    >>> text.splitlines()[-1]  # the parse spec comes last, to copy as a whole
    '}'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from tfstream.pipelines.manifest import (
    CategoricalStatistics,
    DriftReport,
    LengthStatistics,
    Manifest,
    NumericStatistics,
    SequenceStatistics,
    SourceInfo,
)
from tfstream.pipelines.tables import cell, render_table, size
from tfstream.transforms.analyzers import length_stats
from tfstream.transforms.schema import format_parse_spec, length_key


class Heading(str):
    """A section's title (in text: a blank line, then the title)."""


class Subheading(Heading):
    """A title inside a section (one feature's vocabulary)."""


class Preformatted(str):
    """Lines kept as they are (the header, the parse spec)."""


@dataclass(frozen=True)
class Table:
    """A table: its cells are raw values, formatted by `tables.cell` when rendered."""

    headers: Sequence[str]
    rows: Sequence[Sequence[Any]]


# A plain str is one line of text (a note, a path).
Block = Union[Heading, Preformatted, Table, str]


def _std(variance: Any) -> Optional[float]:
    return None if variance is None else max(variance, 0.0) ** 0.5


def _moments(stats: NumericStatistics) -> dict[str, Any]:
    """Mean, std, min, p50 and max of a numeric feature, as scalars.

    A vector feature is summarized over the values of all its components (they have
    equal counts, so the pooled variance is the mean variance plus the variance of the
    means); its median cannot be pooled from per-component quantiles, so p50 is None.
    """
    q = stats.quantiles
    if not stats.is_vector:
        return {"mean": stats.mean, "std": _std(stats.variance), "min": stats.min, "max": stats.max,
                "p50": q[5] if q else None}
    means, variances = stats.mean, stats.variance
    k = len(means)
    grand = sum(means) / k
    pooled = sum(variances) / k + sum((m - grand) ** 2 for m in means) / k
    return {"mean": grand, "std": _std(pooled), "min": min(stats.min), "max": max(stats.max), "p50": None}


def _stat_summary(stats) -> str:
    if isinstance(stats, CategoricalStatistics):
        # Non-training splits of newer manifests carry neither vocabulary nor num_unique.
        if stats.vocabulary is None:
            return f"{stats.count:,} values; no vocabulary for this split"
        head = ", ".join(f"{t} ({n:,})" for t, n in stats.vocabulary[:3])
        return f"{cell(stats.num_unique)} values; top: {head}"
    if isinstance(stats, SequenceStatistics):
        ln = stats.length
        return f"length {ln.min}..{ln.max} (mean {ln.mean:.1f}); {cell(stats.steps)} steps"
    if not stats.count:
        return "no values"
    m = _moments(stats)
    if stats.is_vector:
        return f"vector of {len(stats.mean)}; mean of means {m['mean']:.4g}"
    return f"mean {m['mean']:.4g}, std {m['std']:.4g}, min {m['min']:.4g}, max {m['max']:.4g}"


def _numeric_row(name: str, stats: NumericStatistics) -> list[Any]:
    m = _moments(stats) if stats.count else {}
    # missing and non_finite are absent from older manifests: shown as "-", not as 0.
    error = stats.quantiles_rank_error
    p50 = m.get("p50")
    if p50 is not None and error:  # approximate: say by how many rows the median's rank can be off
        p50 = f"{p50:.4g} (±{error:,} rows)"
    return [name, stats.count, stats.missing, stats.non_finite, m.get("mean"), m.get("std"), m.get("min"),
            p50, m.get("max")]


def _numeric_section(manifest: Manifest, split: str) -> list[Block]:
    stats = manifest.split(split)
    rows = []
    for f in manifest.features:
        st = stats.features.get(f.name)
        if f.kind == "numeric" and st is not None:
            rows.append(_numeric_row(f"{f.name}[{f.shape[0]}]" if f.shape else f.name, st))
    if stats.label.numbers is not None:  # a regression target is a number too
        rows.append(_numeric_row(f"{manifest.label.name} (label)", stats.label.numbers))
    if stats.label.transformed is not None:  # what the model learns, before standardization
        rows.append(_numeric_row(f"{manifest.label.transform}({manifest.label.name})", stats.label.transformed))
    if not rows:
        return []
    note = [" (a vector feature name[k] is summarized over all the values of its k components)"] \
        if any(f.kind == "numeric" and f.shape for f in manifest.features) else []
    note += [" (p50 is exact where no bound is shown: the feature has at most 1,024 distinct values; "
             "else its rank is off by at most the rows shown)"]
    return [Heading(f"numeric features ({split!r} split)"),
            Table(["feature", "count", "missing", "non-finite", "mean", "std", "min", "p50", "max"], rows)] + note


def _length_quantiles(length: LengthStatistics) -> list[Any]:
    """p10, p50 and p90 of a sequence length: recorded ones when the manifest has them,
    else from the length histogram (manifests written before quantiles were)."""
    quantiles = length.quantiles or length_stats(length.histogram)["quantiles"]
    return [quantiles[i] for i in (1, 5, 9)] if quantiles else [None, None, None]


def _sequence_section(manifest: Manifest, split: str) -> list[Block]:
    stats = manifest.split(split).features
    rows = []
    for f in manifest.schema.sequence_features:
        st = stats.get(f.name)
        if st is None:
            continue
        ln = st.length
        rows.append([f.name, ln.count, ln.min, *_length_quantiles(ln), ln.max, ln.mean, st.steps, st.truncated])
    if not rows:
        return []
    return [Heading(f"sequence lengths in steps ({split!r} split)"),
            Table(["feature", "sequences", "min", "p10", "p50", "p90", "max", "mean", "steps", "truncated"], rows)]


def _vocabulary_section(manifest: Manifest, split: str, top: int = 5) -> list[Block]:
    stats = manifest.split(split).features
    out = []
    for f in manifest.features:
        st = stats.get(f.name)
        if f.kind != "categorical" or st is None:
            continue
        out.append(Subheading(f"{f.name}: values {cell(st.count)}, missing {cell(st.missing)}, "
                              f"unique {cell(st.num_unique)}, OOV buckets {cell(st.oov_buckets)}"))
        if st.vocabulary is None:
            out.append("  no vocabulary recorded for this split (only the training split has one)")
            continue
        total = st.count or 0
        out.append(Table(
            ["token", "count", "share"],
            [[t, n, f"{100 * n / total:.1f}%" if total else None] for t, n in st.vocabulary[:top]],
        ))
    if not out:
        return []
    return [Heading(f"vocabulary heads ({split!r} split; top {top}, share of the feature's values)")] + out


def _reason_rows(outcome: str, counts: Mapping[str, int]) -> list[list[Any]]:
    # Keys are "<reason>:<column>", e.g. "missing:dep_delay".
    return [[outcome, *(key.split(":", 1) if ":" in key else (key, None)), n] for key, n in counts.items()]


def _rows_section(source: SourceInfo) -> list[Block]:
    """Dropped and rejected rows by reason, and the quarantine files (the totals are in
    the header's ``rows`` line)."""
    rows = _reason_rows("dropped", source.dropped) + _reason_rows("rejected", source.rejected)
    out: list[Block] = [Heading("rows left out, by reason"),
                        Table(["outcome", "reason", "column", "rows"], rows)] if rows else []
    if source.quarantine:
        kept = source.rows_dropped + (source.rows_rejected or 0)
        out += [Heading(f"quarantine: {cell(kept)} row(s) as JSON lines ({cell(source.rows_dropped)} dropped, "
                    f"{cell(source.rows_rejected)} rejected), in {len(source.quarantine)} file(s) under the dataset")]
        out += [f"  {path}" for path in source.quarantine]
    return out


def _drift_section(drift: Optional[DriftReport]) -> list[Block]:
    if drift is None:
        return []
    head = f"drift against {drift.against or '-'}: {len(drift.findings)} finding(s)"
    if not drift.findings:
        return [Heading(head)]
    return [Heading(head), Table(
        ["feature", "change", "severity", "value", "threshold", "detail"],
        [[d.feature, d.kind, d.severity, d.value, d.threshold, d.detail] for d in drift.findings],
    )]


def _schema_section(manifest: Manifest, split: str) -> list[Block]:
    stats = manifest.split(split)
    rows = []
    for f in manifest.features:
        rows.append([f.name, f.kind, f.dtype, list(f.shape) if f.shape else "scalar",
                     _stat_summary(stats.statistics(f.name))])
        if f.kind == "sequence":
            rows.append([length_key(f.name), "length", "int64", "scalar", "steps in the sequence"])
    label = manifest.label
    if stats.label.class_counts is not None:
        summary = ", ".join(f"{k}: {v:,}" for k, v in stats.label.class_counts.items())
    elif stats.label.numbers is not None and stats.label.numbers.count:
        numbers = stats.label.numbers
        summary = f"mean {numbers.mean:.4g}, std {_std(numbers.variance):.4g}"
    else:
        summary = "no values"
    rows.append([label.name, f"label ({label.task})", label.dtype, "scalar", summary])
    return [Heading(f"schema (statistics of the {split!r} split)"),
            Table(["feature", "kind", "dtype", "shape", "statistics"], rows)]


def report_blocks(manifest: Manifest, *, train_split: Optional[str] = None) -> list[Block]:
    """The manifest's report as blocks: the header, splits, shards, schema, per-feature
    statistics, vocabulary heads, sequence lengths, rows by outcome (dropped, rejected,
    quarantine), drift, and the parse spec (last, so that it can be copied as a whole).

    Args:
        manifest: a loaded manifest.
        train_split: the split whose statistics are shown (default:
            `Manifest.train_split`).
    """
    source = manifest.source
    files = ", ".join(f.get("name", "?") for f in source.files)
    rejected = f", {source.rows_rejected:,} rejected" if source.rows_rejected is not None else ""
    by_reason = " (by reason below)" if source.dropped or source.rejected else ""
    snapshot = manifest.snapshot
    folder = f"snapshots/{snapshot['id']}/" if snapshot else ""
    header = [
        f"dataset   {manifest.name}  ({manifest.root})",
        f"written   {manifest.created_at}  format v{manifest.format_version}  compression {manifest.compression}",
        *([f"snapshot  {snapshot['id']}  (previous: {snapshot.get('parent') or 'none'}); files under {folder}"]
          if snapshot else []),
        f"source    {files}  sha256 {source.sha256[:16]}",
        f"rows      {source.rows_read:,} read, {source.rows_written:,} written, {source.rows_dropped:,} dropped"
        f"{rejected}{by_reason}",
    ]
    out: list[Block] = [
        Preformatted("\n".join(header)),
        Heading("splits"),
        Table(["split", "shards", "records", "bytes", "record bytes"],
              [[s.name, len(s.shards), s.num_examples, size(s.num_bytes), size(s.record_bytes)]
               for s in manifest.splits.values()]),
        Heading("shards"),
        Table(["split", "file", "records", "bytes", "sha256"],
              [[s.name, sh.file[len(folder):] if sh.file.startswith(folder) else sh.file, sh.records, size(sh.bytes),
                sh.sha256[:12]]
               for s in manifest.splits.values() for sh in s.shards]),
    ]
    split = train_split or manifest.train_split
    out += _schema_section(manifest, split)
    out += _numeric_section(manifest, split) + _sequence_section(manifest, split)
    out += _vocabulary_section(manifest, split) + _rows_section(source)
    out += _drift_section(manifest.drift)
    out += [Heading("parse spec (tf.io.parse_example on batches of serialized records)"),
            Preformatted(format_parse_spec(manifest.schema))]
    return out


def format_manifest(manifest: Manifest, *, train_split: Optional[str] = None,
                    terminal: Optional[bool] = None) -> str:
    """The manifest as text: `report_blocks`, tables drawn by `tables.render_table`.

    Args:
        manifest: a loaded manifest.
        train_split: the split whose statistics are shown (default:
            `Manifest.train_split`).
        terminal: as in `tables.render_table`.
    """
    out: list[str] = []
    previous = None
    for block in report_blocks(manifest, train_split=train_split):
        if isinstance(block, Table):
            out.append(render_table(block.headers, block.rows, terminal=terminal))
        elif isinstance(block, Heading):
            # a section's first subheading follows its title without a blank line
            out += [block] if isinstance(block, Subheading) and isinstance(previous, Heading) else ["", block]
        else:
            out.append(str(block))
        previous = block
    return "\n".join(out)
