"""Schema and statistics drift between two runs of the same job.

`compare_manifests` looks at two manifests and lists what changed in the schema and in
the training split's statistics: the checks of TensorFlow Data Validation's skew and
drift comparators, on the statistics tfstream already computes, with no extra pass over
the data.

* ``added`` / ``removed`` / ``retyped``: a feature (or the label) is new, gone, or has
  another kind, dtype or shape.
* ``mean_shift``: a numeric feature's mean moved by more than ``max_mean_shift``
  standard deviations of the previous run (the largest component, for vectors).
* ``length_shift``: the same, for a sequence feature's mean length.
* ``vocab_shift``: the L-infinity distance between the two token distributions (the
  largest change of any token's share) is above ``max_vocab_linf``.
* ``label_shift``: the same two checks on the label (class shares, or the mean).

Findings are warnings, or errors when the config says ``on_drift: error``.

Example:
    >>> from tfstream.pipelines.manifest import CategoricalStatistics
    >>> old = CategoricalStatistics(count=100, vocabulary=(("a", 50), ("b", 50)), num_unique=2)
    >>> new = CategoricalStatistics(count=100, vocabulary=(("a", 80), ("b", 20)), num_unique=2)
    >>> round(vocabulary_linf(old, new), 3)
    0.3
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Optional

from tfstream.pipelines.config import DriftConfig
from tfstream.pipelines.manifest import (
    CategoricalStatistics,
    DriftFinding,
    LabelStatistics,
    Manifest,
    NumericStatistics,
    SequenceStatistics,
)
from tfstream.transforms.analyzers import length_stats
from tfstream.transforms.schema import Schema


def _typed(schema: Schema) -> dict[str, tuple]:
    out = {f.name: (f.kind, f.dtype, tuple(f.shape)) for f in schema.features}
    label = schema.label
    out[label.name] = ("label:" + label.task, label.dtype, tuple(label.classes))
    return out


def _describe(t: tuple) -> str:
    kind, dtype, shape = t
    if kind.startswith("label:"):
        return f"{kind[6:]} label ({dtype}{', classes ' + ', '.join(shape) if shape else ''})"
    return f"{kind} {dtype}{list(shape) if shape else ''}"


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _mean_shift(old: NumericStatistics, new: NumericStatistics) -> Optional[float]:
    """|new mean - old mean| / old std, the largest over components; None when undefined."""
    if not old.count or not new.count or old.mean is None or new.mean is None:
        return None
    shifts = []
    for m0, m1, v in zip(_as_list(old.mean), _as_list(new.mean), _as_list(old.variance)):
        if m0 is None or m1 is None or v is None:
            continue
        std = math.sqrt(v) if v > 0 else 0.0
        if std == 0.0:
            shifts.append(0.0 if m0 == m1 else math.inf)
        else:
            shifts.append(abs(m1 - m0) / std)
    return max(shifts) if shifts else None


def _length_moments(stats: SequenceStatistics) -> NumericStatistics:
    """A sequence's lengths as numbers (from the length histogram, which every manifest
    format has)."""
    lengths = length_stats(stats.length.histogram)
    return NumericStatistics(count=lengths["count"], mean=lengths["mean"], variance=lengths["variance"])


def vocabulary_linf(old: CategoricalStatistics, new: CategoricalStatistics) -> Optional[float]:
    """The largest change in any token's share between two categorical statistics.

    Shares are of all the feature's values, not of the kept vocabulary. A vocabulary cut
    to its ``vocab_size`` most frequent tokens does not say the share of a token it left
    out, only that it is at most its smallest kept share: such a token counts with the
    smallest change that is certain, so a token crossing the cut is not drift by itself.
    """
    def shares(stats: CategoricalStatistics):
        total = (stats.count or 0) - (stats.missing or 0)
        vocab = stats.vocabulary or ()
        if not total or not vocab:
            return None, 0.0, True
        p = {t: n / total for t, n in vocab}
        unique = stats.num_unique if stats.num_unique is not None else len(vocab)
        return p, min(p.values()), unique <= len(vocab)

    p, p_floor, p_complete = shares(old)
    q, q_floor, q_complete = shares(new)
    if p is None or q is None:
        return None
    worst = 0.0
    for token in set(p) | set(q):
        if token in p and token in q:
            change = abs(p[token] - q[token])
        elif token in p:  # not in the new vocabulary: its new share is 0, or at most q_floor
            change = p[token] if q_complete else max(0.0, p[token] - q_floor)
        else:
            change = q[token] if p_complete else max(0.0, q[token] - p_floor)
        worst = max(worst, change)
    return worst


def compare_manifests(previous: Manifest, current: Manifest, split: str,
                      config: DriftConfig) -> list[DriftFinding]:
    """The drift findings from ``previous`` to ``current`` on ``split``.

    Returns:
        The findings; empty when nothing moved beyond the thresholds, or when
        ``on_drift: ignore``.
    """
    if config.on_drift == "ignore":
        return []
    severity = "error" if config.on_drift == "error" else "warning"

    def finding(feature: str, kind: str, detail: str, value: Optional[float] = None,
                threshold: Optional[float] = None) -> DriftFinding:
        return DriftFinding(feature, kind, detail, value, threshold, severity)

    findings = []
    old_types, new_types = _typed(previous.schema), _typed(current.schema)
    for name in new_types:
        if name not in old_types:
            findings.append(finding(name, "added", f"new: {_describe(new_types[name])}"))
        elif old_types[name] != new_types[name]:
            findings.append(finding(name, "retyped", f"was {_describe(old_types[name])}, now "
                                                     f"{_describe(new_types[name])}"))
    for name in old_types:
        if name not in new_types:
            findings.append(finding(name, "removed", f"gone: was {_describe(old_types[name])}"))

    if split not in previous.split_names or split not in current.split_names:
        return findings  # the previous run had no such split: the schema is all we can compare
    old_stats, new_stats = previous.split(split).features, current.split(split).features
    for name, new in new_stats.items():
        old = old_stats.get(name)
        if old is None or old_types.get(name) != new_types.get(name) or old.kind != new.kind:
            continue
        if isinstance(new, CategoricalStatistics):
            if old.vocabulary and new.vocabulary:
                linf = vocabulary_linf(old, new)
                if linf is not None and linf > config.max_vocab_linf:
                    findings.append(finding(
                        name, "vocab_shift",
                        f"token shares moved by up to {linf:.3f} (L-infinity), above {config.max_vocab_linf:g}",
                        linf, config.max_vocab_linf))
            continue
        if isinstance(new, SequenceStatistics):
            old_m, new_m, what, kind_out = _length_moments(old), _length_moments(new), "mean length", "length_shift"
        else:
            old_m, new_m, what, kind_out = old, new, "mean", "mean_shift"
        shift = _mean_shift(old_m, new_m)
        if shift is not None and shift > config.max_mean_shift:
            shown = "a constant before" if math.isinf(shift) else f"{shift:.2f} standard deviations"
            findings.append(finding(
                name, kind_out,
                f"{what} moved from {_fmt(old_m.mean)} to {_fmt(new_m.mean)}: {shown} "
                f"(more than {config.max_mean_shift:g})",
                None if math.isinf(shift) else shift, config.max_mean_shift))
    # else reported as retyped; a changed label.transform changes no stored value
    if dataclasses.replace(previous.label, transform="none") == dataclasses.replace(current.label, transform="none"):
        findings += _label_drift(previous.split(split).label, current.split(split).label, current.label.name,
                                 config, finding)
    return findings


def _label_drift(old: LabelStatistics, new: LabelStatistics, name: str, config: DriftConfig,
                 finding) -> list[DriftFinding]:
    """The label's class shares (L-infinity) or, for regression, its mean."""
    if old.class_counts is not None and new.class_counts is not None:
        as_vocab = [CategoricalStatistics(count=sum(c.values()), vocabulary=tuple(c.items()))
                    for c in (old.class_counts, new.class_counts)]
        linf = vocabulary_linf(*as_vocab)
        if linf is not None and linf > config.max_vocab_linf:
            return [finding(name, "label_shift", f"class shares moved by up to {linf:.3f} (L-infinity), above "
                                                 f"{config.max_vocab_linf:g}", linf, config.max_vocab_linf)]
        return []
    if old.numbers is None or new.numbers is None:
        return []
    shift = _mean_shift(old.numbers, new.numbers)
    if shift is not None and shift > config.max_mean_shift:
        return [finding(name, "label_shift", f"mean moved from {_fmt(old.numbers.mean)} to "
                                             f"{_fmt(new.numbers.mean)}: {shift:.2f} standard deviations (more "
                                             f"than {config.max_mean_shift:g})",
                        None if math.isinf(shift) else shift, config.max_mean_shift)]
    return []


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(f"{v:.4g}" for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    return f"{value:.4g}"


def format_findings(findings: list[DriftFinding]) -> list[str]:
    """One line per finding: ``feature: kind: detail``."""
    return [f"{f.feature}: {f.kind}: {f.detail}" for f in findings]
