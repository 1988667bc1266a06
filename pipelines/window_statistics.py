"""One split's statistics over several datasets, merged from their manifests alone.

A training window (`pipelines.window`) reads several datasets ("spans") as one; its
statistics are those of all their records, computed from each span's manifest without
reading a record. What can be merged exactly is; what cannot is left out, never guessed:

* **added**: every count (``count``, ``missing``, ``non_finite``, ``truncated``,
  ``steps``, the examples, the class counts), sequence length histograms, and the
  tokens' counts of the vocabularies;
* **merged exactly**: means and (population) variances, per component, with Chan et
  al.'s parallel formula (`analyzers.Moments.merge`, the update the analyzers use), and
  min and max. Each span's moments are weighted by the values behind them: the rows
  less those imputed (``missing`` under ``on_missing: impute``, ``non_finite``) for a
  numeric feature, the steps for a sequence, the rows for a regression label. The
  manifest does not hold that count per component: for a vector with only some of its
  components imputed in a row, and for sequences with non-finite steps, the weights
  (and so the merged moments) are approximate;
* **recomputed**: sequence length statistics (count, min, max, mean, deciles) from the
  merged length histogram, with the analyzers' own `analyzers.length_stats`;
  vocabularies re-ranked as the writers rank them (`vocabulary.top_tokens`: most
  frequent first, ties alphabetical) and cut at the feature's ``vocab_size``;
* **left out**: a numeric feature's (and a regression label's) ``quantiles``,
  ``quantiles_rank_error`` and ``histogram``: deciles and bins of separate runs do not
  combine into those of the whole. Nothing that trains or reads needs them (models use
  the moments, bucketing the length histograms, the memory planner the record sizes);
  a regression's ``train_median`` baseline is then not scored, and reports show ``-``.

A span's vocabulary is complete when it lists every token it saw (``num_unique`` equal
to its length). Merged complete vocabularies are exact: the same tokens, counts and
order as one run over all the rows would give, and ``num_unique`` the size of their
union. Otherwise a token that a span cut off may be missing or undercounted: the merged
vocabulary records ``"vocabulary_exact": false`` and ``num_unique`` is a lower bound.

Example:
    >>> schema = {"features": [{"name": "x", "kind": "numeric", "dtype": "float32", "shape": []}],
    ...           "label": {"name": "y", "task": "binary", "classes": ["0", "1"]}}
    >>> a = {"num_examples": 2, "features": {"x": {"kind": "numeric", "count": 2, "missing": 0,
    ...      "mean": 1.5, "variance": 0.25, "min": 1.0, "max": 2.0}}, "label": {"class_counts": {"0": 2, "1": 0}}}
    >>> b = {"num_examples": 2, "features": {"x": {"kind": "numeric", "count": 2, "missing": 0,
    ...      "mean": 4.5, "variance": 2.25, "min": 3.0, "max": 6.0}}, "label": {"class_counts": {"0": 1, "1": 1}}}
    >>> merged = merge_split_statistics([a, b], schema)
    >>> x = merged["features"]["x"]
    >>> x["mean"], x["variance"], x["min"], x["max"], merged["label"]["class_counts"]
    (3.0, 3.5, 1.0, 6.0, {'0': 3, '1': 1})
"""

from __future__ import annotations

import collections
from typing import Any, Mapping, Optional, Sequence

from tfstream.transforms.analyzers import Moments, length_stats
from tfstream.transforms.schema import Feature, Schema
from tfstream.transforms.vocabulary import top_tokens

class VocabularyMismatch(ValueError):
    """Some datasets have a vocabulary for a feature in a split and others not.

    Attributes:
        index: the first part (dataset) without one.
    """

    def __init__(self, message: str, index: int):
        super().__init__(message)
        self.index = index


# What one run's statistics record about the run's policy, not its data: the newest's kept.
_POLICIES = ("impute", "oov_buckets")


def merge_split_statistics(parts: Sequence[Mapping[str, Any]], schema_json: Mapping[str, Any],
                           feature_configs: Optional[Mapping[str, Mapping[str, Any]]] = None) -> dict[str, Any]:
    """The statistics of one split over several datasets (see the module's docstring).

    Args:
        parts: each dataset's ``splits.<split>.statistics``, oldest first (policies
            such as ``impute`` and ``oov_buckets`` are the last one's).
        schema_json: the datasets' schema (``manifest.json``'s ``schema``).
        feature_configs: feature name → its entry of the job config's ``features``
            (``vocab_size``, ``on_missing``); default: none (every vocabulary cut at
            `analyzers.MAX_VOCABULARY`, missing numbers taken as imputed).

    Returns:
        The merged statistics, in the analyzers' layout (``num_examples``,
        ``features``, ``label``).

    Raises:
        VocabularyMismatch: some parts have a vocabulary for a feature and others not
            (the datasets were written with different training splits).
    """
    schema = Schema.from_json(schema_json)
    configs = feature_configs or {}
    features = {}
    for f in schema.features:
        feature_parts = [p.get("features", {}).get(f.name) or {} for p in parts]
        if f.kind == "categorical":
            merged = _categorical(f, feature_parts, configs.get(f.name, {}))
        elif f.kind == "sequence":
            merged = _sequence(f, feature_parts)
        else:
            merged = _numeric(f, feature_parts, configs.get(f.name, {}))
        for key in _POLICIES:
            if key in feature_parts[-1]:
                merged[key] = feature_parts[-1][key]
        features[f.name] = merged
    return {"num_examples": _sum(parts, "num_examples") or 0, "features": features,
            "label": _label(schema, [p.get("label") or {} for p in parts])}


def _sum(parts: Sequence[Mapping[str, Any]], key: str) -> Optional[int]:
    """The parts' ``key`` added up (None when no part records it: older manifests)."""
    values = [p.get(key) for p in parts]
    return None if all(v is None for v in values) else int(sum(v or 0 for v in values))


def _counts(parts: Sequence[Mapping[str, Any]], keys: Sequence[str], kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind}
    for key in keys:
        total = _sum(parts, key)
        if total is not None:
            out[key] = total
    return out


def _moments(parts: Sequence[Mapping[str, Any]], weights: Sequence[float], size: int, scalar: bool
             ) -> dict[str, Any]:
    """The parts' moments merged, each weighted by its number of values (``count`` not
    included: the caller's count is the rows')."""
    merged = Moments(size)
    for part, n in zip(parts, weights):
        merged.merge(Moments.from_json(part, n, size))
    out = merged.to_json(scalar)
    out.pop("count")
    return out


def _numeric(f: Feature, parts: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    out = _counts(parts, ("count", "missing", "non_finite"), "numeric")
    # The values behind the moments: the rows, less those left to impute (a missing value
    # under `on_missing: default` holds the default, and counts).
    imputed_missing = config.get("on_missing", "impute") != "default"
    weights = [(p.get("count") or 0) - (p.get("non_finite") or 0) - ((p.get("missing") or 0) if imputed_missing else 0)
               for p in parts]
    return {**out, **_moments(parts, weights, f.size, scalar=not f.shape)}


def _sequence(f: Feature, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    out = _counts(parts, ("count", "missing", "non_finite", "truncated"), "sequence")
    lengths: collections.Counter = collections.Counter()
    for p in parts:
        for length, n in ((p.get("length") or {}).get("histogram") or {}).items():
            lengths[int(length)] += int(n)
    out["length"] = length_stats(lengths)
    out["steps"] = _sum(parts, "steps") or 0
    return {**out, **_moments(parts, [p.get("steps") or 0 for p in parts], f.size, scalar=False)}


def _categorical(f: Feature, parts: Sequence[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, Any]:
    out = _counts(parts, ("count", "missing"), "categorical")
    has = ["vocabulary" in p for p in parts]
    if not any(has):
        return out
    if not all(has):
        raise VocabularyMismatch(
            f"feature {f.name!r} has a vocabulary in this split in some datasets and not in others: they were "
            f"written with different training splits (train.train_split)", has.index(False))
    counts: collections.Counter = collections.Counter()
    complete = True
    for p in parts:
        vocabulary = p["vocabulary"] or []
        counts.update({token: int(n) for token, n in vocabulary})
        complete = complete and p.get("vocabulary_exact", True) and p.get("num_unique") == len(vocabulary)
    [(_, ranked)] = top_tokens({f.name: counts}, {f.name: config.get("vocab_size")})
    if complete:
        return {**out, **ranked}
    # Some span cut its vocabulary: tokens it left out are unknown, so the union of the
    # lists (or the largest span's own count, if larger) is the least there can be.
    unique = max([len(counts), *(p.get("num_unique") or 0 for p in parts)])
    return {**out, "num_unique": unique, "vocabulary": ranked["vocabulary"], "vocabulary_exact": False}


def _label(schema: Schema, parts: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    label = schema.label
    if label.num_classes:
        names = list(label.classes) or list(parts[-1].get("class_counts") or {})
        return {"class_counts": {c: int(sum((p.get("class_counts") or {}).get(c, 0) for p in parts)) for c in names}}
    if not any(parts):
        return {}
    counts = [p.get("count") or 0 for p in parts]  # a stored label is always a finite number
    out: dict[str, Any] = {"count": int(sum(counts)), **_moments(parts, counts, 1, scalar=True)}
    transformed = [p.get("transformed") for p in parts]
    if any(transformed):
        transformed = [t or {} for t in transformed]
        merged = Moments(1)
        for t in transformed:
            merged.merge(Moments.from_json(t, t.get("count") or 0))
        out["transformed"] = {"transform": label.transform, **merged.to_json(scalar=True)}
    return out
