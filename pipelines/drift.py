"""Schema and statistics drift between two runs of the same job.

`compare` looks at two manifests (plain dicts) and lists what changed in the schema and
in the training split's statistics: the checks of TensorFlow Data Validation's skew and
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
    >>> findings = compare_manifests(previous_manifest, manifest, "train", DriftConfig())  # doctest: +SKIP
    >>> [f["kind"] for f in findings]                                             # doctest: +SKIP
    ['mean_shift']
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

from tfstream.pipelines.config import DriftConfig
from tfstream.transforms.analyzers import length_stats


def _finding(feature: str, kind: str, detail: str, severity: str, value: Optional[float] = None,
             threshold: Optional[float] = None) -> dict[str, Any]:
    return {"feature": feature, "kind": kind, "detail": detail, "value": value, "threshold": threshold,
            "severity": severity}


def _typed(schema: Mapping[str, Any]) -> dict[str, tuple]:
    out = {f["name"]: (f["kind"], f["dtype"], tuple(f.get("shape", ()))) for f in schema["features"]}
    label = schema["label"]
    out[label["name"]] = ("label:" + label["task"], label["dtype"], tuple(label.get("classes", ())))
    return out


def _describe(t: tuple) -> str:
    kind, dtype, shape = t
    if kind.startswith("label:"):
        return f"{kind[6:]} label ({dtype}{', classes ' + ', '.join(shape) if shape else ''})"
    return f"{kind} {dtype}{list(shape) if shape else ''}"


def _mean_shift(old: Mapping[str, Any], new: Mapping[str, Any]) -> Optional[float]:
    """|new mean - old mean| / old std, the largest over components; None when undefined."""
    if not old.get("count") or not new.get("count") or "mean" not in old or "mean" not in new:
        return None
    olds = old["mean"] if isinstance(old["mean"], list) else [old["mean"]]
    news = new["mean"] if isinstance(new["mean"], list) else [new["mean"]]
    variances = old["variance"] if isinstance(old["variance"], list) else [old["variance"]]
    shifts = []
    for m0, m1, v in zip(olds, news, variances):
        std = math.sqrt(v) if v > 0 else 0.0
        if std == 0.0:
            shifts.append(0.0 if m0 == m1 else math.inf)
        else:
            shifts.append(abs(m1 - m0) / std)
    return max(shifts) if shifts else None


def vocabulary_linf(old: Mapping[str, Any], new: Mapping[str, Any]) -> Optional[float]:
    """The largest change in any token's share between two categorical statistics
    (``{"count", "missing", "vocabulary": [[token, count], ...], "num_unique"}``).

    Shares are of all the feature's values, not of the kept vocabulary. A vocabulary cut
    to its ``vocab_size`` most frequent tokens does not say the share of a token it left
    out, only that it is at most its smallest kept share: such a token counts with the
    smallest change that is certain, so a token crossing the cut is not drift by itself.
    """
    def shares(stats):
        total = (stats.get("count") or 0) - (stats.get("missing") or 0)
        vocab = stats.get("vocabulary") or []
        if not total or not vocab:
            return None, 0.0, True
        p = {t: n / total for t, n in vocab}
        complete = stats.get("num_unique", len(vocab)) <= len(vocab)
        return p, min(p.values()), complete

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


def compare_manifests(previous: Mapping[str, Any], current: Mapping[str, Any], split: str,
            config: DriftConfig) -> list[dict[str, Any]]:
    """The drift findings from ``previous`` to ``current`` (manifest dicts) on ``split``.

    Returns:
        A list of ``{"feature", "kind", "detail", "value", "threshold", "severity"}``;
        empty when nothing moved beyond the thresholds, or when ``on_drift: ignore``.
    """
    if config.on_drift == "ignore":
        return []
    severity = "error" if config.on_drift == "error" else "warning"
    findings = []
    old_types, new_types = _typed(previous["schema"]), _typed(current["schema"])
    for name in new_types:
        if name not in old_types:
            findings.append(_finding(name, "added", f"new: {_describe(new_types[name])}", severity))
        elif old_types[name] != new_types[name]:
            findings.append(_finding(name, "retyped", f"was {_describe(old_types[name])}, now "
                                                      f"{_describe(new_types[name])}", severity))
    for name in old_types:
        if name not in new_types:
            findings.append(_finding(name, "removed", f"gone: was {_describe(old_types[name])}", severity))

    try:
        old_stats = previous["splits"][split]["statistics"]["features"]
        new_stats = current["splits"][split]["statistics"]["features"]
    except KeyError:
        return findings  # the previous run had no such split: the schema is all we can compare
    for name, new in new_stats.items():
        old = old_stats.get(name)
        if old is None or old_types.get(name) != new_types.get(name):
            continue
        kind = new.get("kind")
        if kind == "categorical":
            if old.get("vocabulary") and new.get("vocabulary"):
                linf = vocabulary_linf(old, new)
                if linf is not None and linf > config.max_vocab_linf:
                    findings.append(_finding(
                        name, "vocab_shift",
                        f"token shares moved by up to {linf:.3f} (L-infinity), above {config.max_vocab_linf:g}",
                        severity, linf, config.max_vocab_linf))
            continue
        if kind == "sequence":
            old_m, new_m, what, kind_out = (length_stats(old.get("length", {}).get("histogram", {})),
                                            length_stats(new.get("length", {}).get("histogram", {})),
                                            "mean length", "length_shift")
        else:
            old_m, new_m, what, kind_out = old, new, "mean", "mean_shift"
        shift = _mean_shift(old_m, new_m)
        if shift is not None and shift > config.max_mean_shift:
            shown = "a constant before" if math.isinf(shift) else f"{shift:.2f} standard deviations"
            findings.append(_finding(
                name, kind_out,
                f"{what} moved from {_fmt(old_m['mean'])} to {_fmt(new_m['mean'])}: {shown} "
                f"(more than {config.max_mean_shift:g})",
                severity, None if math.isinf(shift) else shift, config.max_mean_shift))
    findings += _label_drift(previous, current, split, config, severity)
    return findings


def _label_drift(previous, current, split, config, severity) -> list[dict[str, Any]]:
    """The label's class shares (L-infinity) or, for regression, its mean."""
    try:
        old = previous["splits"][split]["statistics"]["label"]
        new = current["splits"][split]["statistics"]["label"]
    except KeyError:
        return []
    name = current["schema"]["label"]["name"]
    if previous["schema"]["label"] != current["schema"]["label"]:
        return []  # reported as retyped
    if "class_counts" in old and "class_counts" in new:
        as_vocab = [{"count": sum(c.values()), "vocabulary": [[k, v] for k, v in c.items()]}
                    for c in (old["class_counts"], new["class_counts"])]
        linf = vocabulary_linf(*as_vocab)
        if linf is not None and linf > config.max_vocab_linf:
            return [_finding(name, "label_shift", f"class shares moved by up to {linf:.3f} (L-infinity), above "
                                                  f"{config.max_vocab_linf:g}", severity, linf, config.max_vocab_linf)]
        return []
    shift = _mean_shift(old, new)
    if shift is not None and shift > config.max_mean_shift:
        return [_finding(name, "label_shift", f"mean moved from {_fmt(old['mean'])} to {_fmt(new['mean'])}: "
                                              f"{shift:.2f} standard deviations (more than {config.max_mean_shift:g})",
                         severity, None if math.isinf(shift) else shift, config.max_mean_shift)]
    return []


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{v:.4g}" for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    return f"{value:.4g}"


def format_findings(findings: list[dict[str, Any]]) -> list[str]:
    """One line per finding: ``feature: kind: detail``."""
    return [f"{f['feature']}: {f['kind']}: {f['detail']}" for f in findings]
