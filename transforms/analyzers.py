"""Full-pass statistics over validated rows, as a mergeable accumulator.

`DatasetStats` follows the `beam.CombineFn` protocol (create / add / merge / extract)
without importing Beam, so the Beam pipeline can lift it into a distributed combine
(partial accumulators per bundle, merged on any worker), and tests can run it on a list.
Its memory is bounded whatever the number of rows: moments, a quantile sketch, and a
histogram of sequence lengths. Vocabularies are not counted here (a table of every
distinct token is unbounded); the pipeline counts them with a keyed Beam count, as
tf.Transform does.

* Moments use Chan et al.'s pairwise update (count, mean, sum of squared deviations),
  which stays accurate when merged in any order, unlike sum-of-squares formulas.
* Quantiles come from `QuantileSketch`, a KLL-style compactor sketch: mergeable, a few
  thousand numbers per feature, rank error well under 1% (tested against NumPy), and
  exact while a feature has at most `EXACT_DISTINCT` distinct values. Each figure says
  how far off it can be: ``quantiles_rank_error`` and the histogram's ``count_error``
  (0 when exact).
* Values arrive row by row and are buffered, then added a few thousand at a time with
  NumPy: per-value Python work would dominate the pipeline's time.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Mapping, Optional

import numpy as np

from tfstream.transforms.label_scaling import forward
from tfstream.transforms.schema import Schema
from tfstream.transforms.validation import NOTES

# Vocabularies are kept whole up to this size in the manifest, most frequent first.
MAX_VOCABULARY = 100_000

# Reported quantiles: 0%, 10%, ..., 100%; histograms: equal-width bins.
QUANTILES = tuple(i / 10 for i in range(11))
HISTOGRAM_BINS = 20

_BUFFER = 4096
# A sketch counts values exactly while it has seen at most this many distinct ones.
EXACT_DISTINCT = 1024
SKETCH_K = 2048


class Moments:
    """Count, mean, variance, min and max of scalars or of vectors (per component).
    NaN components are skipped (they are values still to impute)."""

    __slots__ = ("n", "mean", "m2", "min", "max")

    def __init__(self, size: int = 1):
        self.n = np.zeros(size)
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)
        self.min = np.full(size, np.inf)
        self.max = np.full(size, -np.inf)

    def add(self, values) -> None:
        """Add one value (scalar or vector) or a batch of shape ``[n, size]``."""
        arr = np.asarray(values, dtype=np.float64).reshape(-1, self.mean.shape[0])
        if not arr.shape[0]:
            return
        ok = np.isfinite(arr)
        n_b = ok.sum(axis=0).astype(np.float64)
        if ok.all():
            mean_b = arr.mean(axis=0)
            m2_b = ((arr - mean_b) ** 2).sum(axis=0)
            min_b, max_b = arr.min(axis=0), arr.max(axis=0)
        else:
            masked = np.where(ok, arr, 0.0)
            mean_b = masked.sum(axis=0) / np.maximum(n_b, 1)
            m2_b = (np.where(ok, arr - mean_b, 0.0) ** 2).sum(axis=0)
            min_b = np.where(ok, arr, np.inf).min(axis=0)
            max_b = np.where(ok, arr, -np.inf).max(axis=0)
        self._merge(n_b, mean_b, m2_b, min_b, max_b)

    def merge(self, other: "Moments") -> None:
        self._merge(other.n, other.mean, other.m2, other.min, other.max)

    @classmethod
    def from_json(cls, stats: Mapping[str, Any], n: Any, size: int = 1) -> "Moments":
        """Moments back from what `to_json` wrote (``mean``, ``variance``: population,
        ``min``, ``max``; scalars, or lists of ``size`` components), given the number of
        values behind each component (``n``: one number, or one per component), which
        the JSON does not hold per component. Merging such moments (`merge`) gives the
        moments of all their values: the statistics of two runs combine without their
        rows.

        Example:
            >>> a, b = Moments(), Moments()
            >>> a.add([1.0, 2.0]); b.add([3.0, 6.0])
            >>> m = Moments.from_json(a.to_json(scalar=True), 2)
            >>> m.merge(Moments.from_json(b.to_json(scalar=True), 2))
            >>> m.to_json(scalar=True)["variance"] == float(np.var([1.0, 2.0, 3.0, 6.0]))
            True
        """
        def values(key: str, missing: float) -> np.ndarray:
            value = stats.get(key)
            items = value if isinstance(value, list) else [value] * size
            return np.array([missing if v is None else float(v) for v in items], dtype=np.float64)

        out = cls(size)
        mean = values("mean", np.nan)
        seen = ~np.isnan(mean)  # a component never seen has null statistics, and no values
        out.n = np.where(seen, np.broadcast_to(np.asarray(n, dtype=np.float64), (size,)), 0.0)
        out.mean = np.where(seen, mean, 0.0)
        out.m2 = np.where(seen, values("variance", 0.0), 0.0) * out.n
        out.min = np.where(seen, values("min", np.inf), np.inf)
        out.max = np.where(seen, values("max", -np.inf), -np.inf)
        return out

    def _merge(self, n_b, mean_b, m2_b, min_b, max_b) -> None:
        n = self.n + n_b
        safe = np.maximum(n, 1)
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / safe)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / safe)
        self.n = n
        self.min = np.minimum(self.min, min_b)
        self.max = np.maximum(self.max, max_b)

    def to_json(self, scalar: bool) -> dict[str, Any]:
        def out(a):
            # a vector component never seen has no statistics: null, not NaN or inf
            # (which strict JSON cannot hold)
            a = [float(x) if n else None for x, n in zip(a, self.n)]
            return a[0] if scalar else a

        if not self.n.any():
            return {"count": 0}
        return {
            "count": int(self.n.max()),
            "mean": out(self.mean),
            "variance": out(self.m2 / np.maximum(self.n, 1)),
            "min": out(self.min),
            "max": out(self.max),
        }


class QuantileSketch:
    """A mergeable sketch of a stream of numbers, for quantiles and histograms.

    KLL-style compactors: level ``i`` holds items of weight ``2**i``; a level that grows
    past ``k`` items is sorted and every other item (alternating the offset) moves up a
    level with twice the weight. Total weight is kept exactly (an odd item out stays),
    so histogram counts add up to the number of values.

    Two things make its figures honest:

    * **Exact counts while the values are few.** Up to `EXACT_DISTINCT` distinct values
      (months, days, hours, small counts: most integer and many float columns), each
      value's count is kept exactly beside the compactors, and quantiles and histograms
      come from it: exact (``exact`` is True).
    * **A proven error bound otherwise.** Each compaction of a level of weight ``w``
      moves any value's estimated rank by at most ``w``; `rank_error` is the sum over
      every compaction (merges add theirs), so a rank (a quantile's position) is off by
      at most that, and a histogram bin's count by at most twice that.

    Example:
        >>> s = QuantileSketch()
        >>> s.add(np.arange(1001.0))
        >>> float(s.quantiles([0.5])[0]), s.exact
        (500.0, True)
        >>> s.add(np.arange(0.5, 5000.0))   # past EXACT_DISTINCT distinct values
        >>> s.exact, s.rank_error > 0
        (False, True)
    """

    __slots__ = ("k", "levels", "flip", "rank_error", "counts")

    def __init__(self, k: int = SKETCH_K):
        self.k = k
        self.levels: list[np.ndarray] = [np.empty(0)]
        self.flip = 0
        self.rank_error = 0  # the most any rank read from the compactors can be off
        self.counts: Optional[dict[float, int]] = {}  # value → count, while exact

    @property
    def count(self) -> int:
        return int(sum(len(lv) << i for i, lv in enumerate(self.levels)))

    @property
    def exact(self) -> bool:
        """Whether quantiles and histograms are exact (few distinct values)."""
        return self.counts is not None

    def add(self, values) -> None:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
        arr = arr[np.isfinite(arr)]
        if arr.size:
            if self.counts is not None:
                distinct, n = np.unique(arr, return_counts=True)
                self._count(zip(distinct.tolist(), n.tolist()), distinct.size)
            self.levels[0] = np.concatenate([self.levels[0], arr])
            self._compact()

    def merge(self, other: "QuantileSketch") -> None:
        for i, lv in enumerate(other.levels):
            if i == len(self.levels):
                self.levels.append(np.empty(0))
            self.levels[i] = np.concatenate([self.levels[i], lv])
        self.rank_error += other.rank_error
        if other.counts is None:
            self.counts = None
        elif self.counts is not None:
            self._count(other.counts.items(), len(other.counts))
        self._compact()

    def _count(self, pairs, size: int) -> None:
        counts = self.counts
        if size > EXACT_DISTINCT:
            self.counts = None
            return
        for value, n in pairs:
            counts[value] = counts.get(value, 0) + n
        if len(counts) > EXACT_DISTINCT:
            self.counts = None

    def _compact(self) -> None:
        i = 0
        while i < len(self.levels):
            level = self.levels[i]
            if len(level) > self.k:
                # stable: a merge sort, fast on the sorted runs `_Accumulator._add` feeds it
                level = np.sort(level, kind="stable")
                keep = level[-1:] if len(level) % 2 else level[:0]
                pairs = level[: len(level) - len(keep)]
                up = pairs[self.flip :: 2]
                self.flip ^= 1
                self.rank_error += 1 << i
                self.levels[i] = keep
                if i + 1 == len(self.levels):
                    self.levels.append(np.empty(0))
                self.levels[i + 1] = np.concatenate([self.levels[i + 1], up])
            i += 1

    def _weighted(self) -> tuple[np.ndarray, np.ndarray]:
        if self.counts is not None:
            values = np.fromiter(self.counts, dtype=np.float64, count=len(self.counts))
            weights = np.fromiter(self.counts.values(), dtype=np.float64, count=len(self.counts))
        else:
            values = np.concatenate(self.levels)
            weights = np.concatenate([np.full(len(lv), float(1 << i)) for i, lv in enumerate(self.levels)])
        order = np.argsort(values, kind="stable")
        return values[order], weights[order]

    def quantiles(self, qs: Iterable[float]) -> np.ndarray:
        """Quantiles (q in [0, 1]); NaN when the sketch is empty. Exact while `exact`;
        else a quantile's rank is off by at most `rank_error`."""
        qs = np.asarray(list(qs), dtype=np.float64)
        values, weights = self._weighted()
        if not values.size:
            return np.full(qs.shape, np.nan)
        cum = np.cumsum(weights)
        idx = np.searchsorted(cum, qs * cum[-1], side="left")
        return values[np.clip(idx, 0, values.size - 1)]

    def histogram(self, lo: float, hi: float, bins: int = HISTOGRAM_BINS) -> tuple[list[float], list[int]]:
        """Equal-width bins over ``[lo, hi]``: ``(edges, counts)``; counts add up to the
        number of values. Exact while `exact`; else each count is off by at most
        ``2 * rank_error``."""
        values, weights = self._weighted()
        if hi <= lo:
            hi = lo + 1.0
        counts, edges = np.histogram(values, bins=bins, range=(lo, hi), weights=weights)
        return [float(e) for e in edges], [int(round(c)) for c in counts]


class _Accumulator:
    __slots__ = ("num_examples", "numeric", "sketches", "pending", "counts", "lengths", "classes", "label",
                 "transformed")

    def __init__(self, schema: Schema):
        self.num_examples = 0
        self.numeric: dict[str, Moments] = {}
        self.sketches: dict[str, list[QuantileSketch]] = {}
        self.pending: dict[str, list] = {}
        # per feature: rows with the feature, values missing, non-finite, truncated
        self.counts: dict[str, collections.Counter] = {f.name: collections.Counter() for f in schema.features}
        self.lengths: dict[str, collections.Counter] = {}
        for f in schema.features:
            if f.kind == "numeric":
                self.numeric[f.name] = Moments(f.size)
                # one sketch per component: smaller for wide vectors (rank error ~1/k)
                k = max(128, SKETCH_K // f.size)
                self.sketches[f.name] = [QuantileSketch(k) for _ in range(f.size)]
                self.pending[f.name] = []
            elif f.kind == "sequence":
                self.numeric[f.name] = Moments(f.size)
                self.lengths[f.name] = collections.Counter()
        label = schema.label
        self.label = label
        self.classes: Optional[list[int]] = [0] * label.num_classes if label.num_classes else None
        # The moments of the transformed label (`label_scaling`), which the model is trained on.
        self.transformed: Optional[Moments] = Moments(1) if label.transform != "none" else None
        if self.classes is None:
            self.numeric[label.name] = Moments(1)
            self.sketches[label.name] = [QuantileSketch()]
            self.pending[label.name] = []

    def buffer(self, name: str, value: Any) -> None:
        pending = self.pending[name]
        pending.append(value)
        if len(pending) >= _BUFFER:
            self.flush(name)

    def extend(self, name: str, values) -> None:
        """`buffer` each of ``values`` (a list, or an array of rows) in turn: the same
        flushes at the same points, so the same statistics. Whole buffers of an array
        are added as they are, without Python numbers."""
        pending = self.pending[name]
        start = 0
        while start < len(values):
            take = _BUFFER - len(pending)
            if not pending and isinstance(values, np.ndarray) and len(values) - start >= take:
                self._add(name, values[start:start + take])
            else:
                part = values[start:start + take]
                pending.extend(part.tolist() if isinstance(part, np.ndarray) else part)
                if len(pending) >= _BUFFER:
                    self.flush(name)
            start += take

    def flush(self, only: Optional[str] = None) -> None:
        for name, values in self.pending.items():
            if not values or (only is not None and name != only):
                continue
            self._add(name, values)
            values.clear()

    def _add(self, name: str, values) -> None:
        moments = self.numeric[name]
        arr = np.asarray(values, dtype=np.float64).reshape(-1, moments.mean.shape[0])
        moments.add(arr)
        # each component sorted at once (the sketches sort their levels: the same values)
        columns = np.sort(arr.T, axis=1) if arr.shape[0] > 1 else arr.T
        for sketch, column in zip(self.sketches[name], columns):
            sketch.add(column)
        if self.transformed is not None and name == self.label.name:
            with np.errstate(invalid="ignore", divide="ignore"):  # (validation keeps labels in the domain)
                self.transformed.add(forward(arr, self.label.transform))


def _none_to_nan(value: Any) -> Any:
    if isinstance(value, list):
        return [np.nan if v is None else v for v in value]
    return np.nan if value is None else value


class DatasetStats:
    """Statistics of one split: per-feature counts, moments, quantiles and histograms,
    sequence lengths, and the label distribution (for a transformed regression label, also
    the moments of the transformed values, under ``transformed``).

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
        >>> stats = DatasetStats(schema)
        >>> stats.extract_output(stats.add_inputs(stats.create_accumulator(),
        ...     [{"x": 1.0, "y": 0.0}, {"x": 3.0, "y": 1.0}]))["features"]["x"]["mean"]
        2.0
    """

    def __init__(self, schema: Schema):
        self.schema = schema

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(self.schema)

    def add_input(self, acc: _Accumulator, row: Mapping[str, Any]) -> _Accumulator:
        acc.num_examples += 1
        notes = row.get(NOTES) or {}
        for kind, names in notes.items():
            for name in names:
                acc.counts[name][kind] += 1
        for f in self.schema.features:
            value = row[f.name]
            acc.counts[f.name]["count"] += 1
            if f.kind == "numeric":
                acc.buffer(f.name, _none_to_nan(value))
            elif f.kind == "sequence":
                acc.numeric[f.name].add(value)
                acc.lengths[f.name][len(value)] += 1
        label = row[self.schema.label.name]
        if acc.classes is not None:
            acc.classes[label] += 1
        else:
            acc.buffer(self.schema.label.name, label)
        return acc

    def add_inputs(self, acc: _Accumulator, rows: Iterable[Mapping[str, Any]]) -> _Accumulator:
        """`add_input` of each row in turn, feature by feature (the same accumulator,
        with less Python work per row)."""
        rows = rows if isinstance(rows, list) else list(rows)
        acc.num_examples += len(rows)
        for row in rows:
            notes = row.get(NOTES)
            if notes:
                for kind, names in notes.items():
                    for name in names:
                        acc.counts[name][kind] += 1
        for f in self.schema.features:
            name = f.name
            acc.counts[name]["count"] += len(rows)
            if f.kind == "numeric":
                acc.extend(name, [_none_to_nan(row[name]) for row in rows])
            elif f.kind == "sequence":
                moments, lengths = acc.numeric[name], acc.lengths[name]
                for row in rows:
                    value = row[name]
                    moments.add(value)
                    lengths[len(value)] += 1
        label = self.schema.label.name
        if acc.classes is not None:
            classes = acc.classes
            for row in rows:
                classes[row[label]] += 1
        else:
            acc.extend(label, [row[label] for row in rows])
        return acc

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        accumulators = iter(accumulators)
        out = next(accumulators)  # the only one a CombineFn may modify
        for acc in accumulators:
            for name, values in acc.pending.items():  # the others' buffered values, read only
                for value in values:
                    out.buffer(name, value)
            out.num_examples += acc.num_examples
            for name, m in acc.numeric.items():
                out.numeric[name].merge(m)
            for name, sketches in acc.sketches.items():
                for mine, theirs in zip(out.sketches[name], sketches):
                    mine.merge(theirs)
            for name, c in acc.counts.items():
                out.counts[name].update(c)
            for name, c in acc.lengths.items():
                out.lengths[name].update(c)
            if out.classes is not None:
                out.classes = [a + b for a, b in zip(out.classes, acc.classes)]
            if out.transformed is not None:
                out.transformed.merge(acc.transformed)
        return out

    def compact(self, acc: _Accumulator) -> _Accumulator:
        acc.flush()  # (Beam calls this before sending an accumulator over the wire)
        return acc

    def extract_output(self, acc: _Accumulator) -> dict[str, Any]:
        acc.flush()
        features: dict[str, Any] = {}
        for f in self.schema.features:
            counts = acc.counts[f.name]
            base = {"kind": f.kind, "count": int(counts["count"]), "missing": int(counts["missing"])}
            if f.kind == "categorical":
                features[f.name] = base
            elif f.kind == "sequence":
                step = acc.numeric[f.name].to_json(scalar=False)
                step.pop("count")
                lengths = acc.lengths[f.name]
                features[f.name] = {**base, "non_finite": int(counts["non_finite"]),
                                    "truncated": int(counts["truncated"]),
                                    "length": length_stats(lengths),
                                    "steps": int(sum(k * v for k, v in lengths.items())), **step}
            else:
                features[f.name] = {**base, "non_finite": int(counts["non_finite"]),
                                    **_numeric_stats(acc.numeric[f.name], acc.sketches[f.name], scalar=not f.shape)}
        label = self.schema.label
        if acc.classes is not None:
            label_stats = {"class_counts": dict(zip(label.classes, acc.classes))}
        else:
            label_stats = {"count": int(acc.num_examples),
                           **_numeric_stats(acc.numeric[label.name], acc.sketches[label.name], scalar=True)}
            if acc.transformed is not None:
                label_stats["transformed"] = {"transform": label.transform, **acc.transformed.to_json(scalar=True)}
        return {"num_examples": int(acc.num_examples), "features": features, "label": label_stats}


def _numeric_stats(moments: Moments, sketches: list[QuantileSketch], scalar: bool) -> dict[str, Any]:
    out = moments.to_json(scalar)
    out.pop("count", None)  # the feature's count is the rows', set by the caller
    if not moments.n.any():
        return out
    quantiles, rank_errors = [], []
    for s, lo, hi, n in zip(sketches, moments.min, moments.max, moments.n):
        if not n:
            quantiles.append(None)
            continue
        q = [float(v) for v in s.quantiles(QUANTILES)]
        q[0], q[-1] = float(lo), float(hi)  # the ends are known exactly
        quantiles.append(q)
        rank_errors.append(0 if s.exact else s.rank_error)
    out["quantiles"] = quantiles[0] if scalar else quantiles
    # the most a quantile's rank can be off (0: exact), over the components
    out["quantiles_rank_error"] = int(max(rank_errors, default=0))
    if scalar:
        edges, counts = sketches[0].histogram(float(moments.min[0]), float(moments.max[0]))
        s = sketches[0]
        out["histogram"] = {"edges": edges, "counts": counts, "count_error": 0 if s.exact else 2 * s.rank_error}
    return out


def length_stats(hist: Mapping[Any, int]) -> dict[str, Any]:
    """Statistics of sequence lengths from their histogram (length → count; keys may be
    strings, as in the manifest): count, min, max, mean, variance, the histogram, and
    deciles (the lower nearest rank: the smallest length with at least q of the
    sequences at or below it).

    Example:
        >>> length_stats({"2": 1, "3": 2})["quantiles"][5]
        3
    """
    counts = collections.Counter()
    for k, v in hist.items():
        counts[int(k)] += int(v)
    n = sum(counts.values())
    if not n:
        return {"count": 0, "min": 0, "max": 0, "mean": 0.0, "variance": 0.0, "histogram": {}, "quantiles": []}
    lengths = sorted(counts)
    cum = np.cumsum([counts[k] for k in lengths])
    idx = np.searchsorted(cum, np.asarray(QUANTILES) * n, side="left")
    mean = sum(k * v for k, v in counts.items()) / n
    return {
        "count": int(n),
        "min": int(lengths[0]),
        "max": int(lengths[-1]),
        "mean": float(mean),
        "variance": float(sum(v * (k - mean) ** 2 for k, v in counts.items()) / n),
        "histogram": {str(k): int(counts[k]) for k in lengths},
        "quantiles": [int(lengths[min(i, len(lengths) - 1)]) for i in idx],
    }


def majority_baseline(label_stats: dict[str, Any]) -> Optional[float]:
    """Accuracy of always predicting the most frequent class (None for regression)."""
    counts = label_stats.get("class_counts")
    if not counts:
        return None
    total = sum(counts.values())
    return max(counts.values()) / total if total else None
