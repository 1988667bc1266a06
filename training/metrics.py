"""Headline metrics of a training run: the trivial baseline it must beat, the one figure
that sums up a run, and a table of runs (`tfstream summary`).

Example:
    >>> headline({"task": "binary", "eval": {"accuracy": 0.9}, "baseline": {"accuracy": 0.76}})
    ('accuracy', 0.9, 0.76)
    >>> table = format_summary([("flights", {"task": "binary", "model": "dense", "examples": {"train": 800,
    ...     "test": 100}, "eval_split": "test", "epochs_run": 4, "eval": {"accuracy": 0.9},
    ...     "baseline": {"accuracy": 0.76}, "beats_baseline": True, "train_examples_per_second": 51234.5})],
    ...     terminal=False)
    >>> table.splitlines()[2].split()
    ['flights', 'dense', '800', 'test', '100', '4', 'accuracy', '0.9', '0.76', 'yes', '51,234']
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from tfstream.pipelines.manifest import Manifest
from tfstream.pipelines.tables import render_table
from tfstream.transforms.analyzers import majority_baseline


def baseline(manifest: Manifest, train_split: str, eval_split: str) -> dict[str, Any]:
    """The trivial model to beat, scored on the eval split from the manifest's statistics.

    Classification: always predict the training split's most frequent class (accuracy).
    Regression: always predict the training mean (mean squared error on eval).
    """
    train, evaluation = manifest.split(train_split).label, manifest.split(eval_split).label
    if manifest.label.task == "regression":
        if evaluation.numbers is None or not evaluation.numbers.count:
            return {"name": "train_mean", "mse": None}
        mse = evaluation.numbers.variance + (evaluation.numbers.mean - train.numbers.mean) ** 2
        return {"name": "train_mean", "mse": float(mse)}
    majority = train.majority()
    total = evaluation.count
    return {
        "name": "majority_class",
        "class": majority,
        "accuracy": evaluation.class_counts[majority] / total if total else None,
        "eval_majority_accuracy": majority_baseline({"class_counts": evaluation.class_counts}),
    }


def headline(metrics: Mapping[str, Any]) -> tuple[str, Any, Any]:
    """``(metric name, eval value, baseline value)`` of a run's metrics.json: the mean
    squared error for regression (lower is better), the accuracy otherwise."""
    if metrics["task"] == "regression":
        return "mse", metrics["eval"]["loss"], metrics["baseline"]["mse"]
    return "accuracy", metrics["eval"]["accuracy"], metrics["baseline"]["accuracy"]


def beats_baseline(metrics: Mapping[str, Any]) -> bool:
    """Whether the eval figure is better than the baseline's."""
    name, value, base = headline(metrics)
    return base is not None and (value < base if name == "mse" else value > base)


def format_summary(runs: Sequence[tuple[str, Mapping[str, Any]]], *, terminal: Optional[bool] = None) -> str:
    """One row per run's metrics.json: the eval figure next to its trivial baseline, with
    the scored split named and counted (``eval_split``; ``eval`` in metrics written
    before it was recorded), and the training split counted, whatever their names."""
    rows = []
    for name, m in runs:
        metric, value, base = headline(m)
        scored = m.get("eval_split") or "eval"
        rows.append([name, m["model"], m["examples"].get(m.get("train_split") or "train"), scored,
                     m["examples"].get(scored), m["epochs_run"], metric, value, base, m["beats_baseline"],
                     m["train_examples_per_second"]])
    return render_table(
        ["run", "model", "train", "eval split", "eval", "epochs", "metric", "eval value", "baseline", "beats",
         "train ex/s"], rows, terminal=terminal)
