"""Full-pass statistics over validated rows, as a mergeable accumulator.

`DatasetStats` follows the `beam.CombineFn` protocol (create / add / merge / extract)
without importing Beam, so the Beam pipeline can lift it into a distributed combine
(partial accumulators per bundle, merged on any worker), and tests can run it on a list.

Moments use Chan et al.'s pairwise update (count, mean, sum of squared deviations), which
stays accurate when merged in any order, unlike sum-of-squares formulas.
"""

from __future__ import annotations

import collections
from typing import Any, Iterable, Optional

import numpy as np

from tfstream.transforms.schema import Schema

# Vocabularies are kept whole up to this size in the manifest, most frequent first.
MAX_VOCABULARY = 100_000


class Moments:
    """Count, mean, variance, min and max of scalars or of vectors (per component)."""

    __slots__ = ("n", "mean", "m2", "min", "max")

    def __init__(self, size: int = 1):
        self.n = 0
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)
        self.min = np.full(size, np.inf)
        self.max = np.full(size, -np.inf)

    def add(self, values) -> None:
        """Add one value (scalar or vector) or a batch of shape ``[n, size]``."""
        arr = np.asarray(values, dtype=np.float64)
        arr = arr.reshape(-1, self.mean.shape[0])
        if not arr.shape[0]:
            return
        n_b = arr.shape[0]
        mean_b = arr.mean(axis=0)
        m2_b = ((arr - mean_b) ** 2).sum(axis=0)
        self._merge(n_b, mean_b, m2_b, arr.min(axis=0), arr.max(axis=0))

    def merge(self, other: "Moments") -> None:
        self._merge(other.n, other.mean, other.m2, other.min, other.max)

    def _merge(self, n_b, mean_b, m2_b, min_b, max_b) -> None:
        if not n_b:
            return
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
        self.n = n
        self.min = np.minimum(self.min, min_b)
        self.max = np.maximum(self.max, max_b)

    def to_json(self, scalar: bool) -> dict[str, Any]:
        def out(a):
            a = [float(x) for x in a]
            return a[0] if scalar else a

        if not self.n:
            return {"count": 0}
        return {
            "count": int(self.n),
            "mean": out(self.mean),
            "variance": out(self.m2 / self.n),
            "min": out(self.min),
            "max": out(self.max),
        }


class _Accumulator:
    __slots__ = ("num_examples", "numeric", "vocab", "lengths", "classes")

    def __init__(self, schema: Schema):
        self.num_examples = 0
        self.numeric: dict[str, Moments] = {}
        self.vocab: dict[str, collections.Counter] = {}
        self.lengths: dict[str, collections.Counter] = {}
        for f in schema.features:
            if f.kind == "categorical":
                self.vocab[f.name] = collections.Counter()
            else:
                self.numeric[f.name] = Moments(f.size)
            if f.kind == "sequence":
                self.lengths[f.name] = collections.Counter()
        label = schema.label
        self.classes: Optional[list[int]] = [0] * label.num_classes if label.num_classes else None
        if self.classes is None:
            self.numeric[label.name] = Moments(1)


class DatasetStats:
    """Statistics of one split: per-feature moments, vocabularies, sequence lengths, and
    the label distribution.

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

    def add_input(self, acc: _Accumulator, row: dict[str, Any]) -> _Accumulator:
        acc.num_examples += 1
        for f in self.schema.features:
            value = row[f.name]
            if f.kind == "categorical":
                acc.vocab[f.name][value] += 1
            else:
                acc.numeric[f.name].add(value)
                if f.kind == "sequence":
                    acc.lengths[f.name][len(value)] += 1
        label = row[self.schema.label.name]
        if acc.classes is not None:
            acc.classes[label] += 1
        else:
            acc.numeric[self.schema.label.name].add(label)
        return acc

    def add_inputs(self, acc: _Accumulator, rows: Iterable[dict[str, Any]]) -> _Accumulator:
        for row in rows:
            acc = self.add_input(acc, row)
        return acc

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        accumulators = iter(accumulators)
        out = next(accumulators)
        for acc in accumulators:
            out.num_examples += acc.num_examples
            for name, m in acc.numeric.items():
                out.numeric[name].merge(m)
            for name, c in acc.vocab.items():
                out.vocab[name].update(c)
            for name, c in acc.lengths.items():
                out.lengths[name].update(c)
            if out.classes is not None:
                out.classes = [a + b for a, b in zip(out.classes, acc.classes)]
        return out

    def extract_output(self, acc: _Accumulator) -> dict[str, Any]:
        features: dict[str, Any] = {}
        for f in self.schema.features:
            if f.kind == "categorical":
                counts = acc.vocab[f.name]
                ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
                features[f.name] = {
                    "kind": f.kind,
                    "count": int(sum(counts.values())),
                    "num_unique": len(counts),
                    "vocabulary": [[token, int(n)] for token, n in ranked[:MAX_VOCABULARY]],
                }
            elif f.kind == "sequence":
                hist = acc.lengths[f.name]
                n_seq = sum(hist.values())
                lengths = {
                    "count": int(n_seq),
                    "min": int(min(hist)) if hist else 0,
                    "max": int(max(hist)) if hist else 0,
                    "mean": float(sum(k * v for k, v in hist.items()) / n_seq) if n_seq else 0.0,
                    "histogram": {str(k): int(hist[k]) for k in sorted(hist)},
                }
                step = acc.numeric[f.name].to_json(scalar=False)
                features[f.name] = {"kind": f.kind, "count": int(n_seq), "length": lengths,
                                    "steps": step.pop("count"), **step}
            else:
                features[f.name] = {"kind": f.kind, **acc.numeric[f.name].to_json(scalar=not f.shape)}
        label = self.schema.label
        if acc.classes is not None:
            label_stats = {"class_counts": dict(zip(label.classes, acc.classes))}
        else:
            label_stats = acc.numeric[label.name].to_json(scalar=True)
        return {"num_examples": int(acc.num_examples), "features": features, "label": label_stats}


def majority_baseline(label_stats: dict[str, Any]) -> Optional[float]:
    """Accuracy of always predicting the most frequent class (None for regression)."""
    counts = label_stats.get("class_counts")
    if not counts:
        return None
    total = sum(counts.values())
    return max(counts.values()) / total if total else None


