"""Headline metrics of a training run: whether it beats the trivial baselines, the
figures that sum up a run, and a table of runs (`tfstream summary`).

A run is judged on a proper score of the eval split, lower is better: the log-loss for a
classifier, the RMSE (in the label's units) for regression. Accuracy alone flatters: the
training majority class, its usual baseline, is an arbitrary pick when the classes are
balanced, while the training class prior scored by log-loss is the best constant
prediction in expectation. The model beats the baselines when its score is lower than
the best trivial baseline's (`training.evaluation`: the training prior; the training mean
and median) by ``train.min_improvement``, relatively (1% by default: a model that
learned nothing scores within noise of the prior or the mean, and one that learned
something clears it).

Example:
    >>> m = {"task": "binary", "eval": {"log_loss": 0.25, "accuracy": 0.9, "macro_f1": 0.8},
    ...      "baseline": {"train_prior": {"class": "no", "log_loss": 0.55, "accuracy": 0.76, "macro_f1": 0.43}}}
    >>> m["beats"] = beats(m["task"], m["eval"], m["baseline"], margin=0.01)
    >>> m["beats"]
    {'metric': 'log_loss', 'model': 0.25, 'baseline': 0.55, 'against': 'train_prior', 'margin': 0.01, 'beats': True}
    >>> headline(m), also(m)
    (('log_loss', 0.25, 0.55), 'accuracy 0.9 (0.76), macro-F1 0.8 (0.43)')
    >>> table = format_summary([("flights", {**m, "model": "dense", "examples": {"train": 800, "test": 100},
    ...     "eval_split": "test", "epochs_run": 4, "beats_baseline": True, "train_examples_per_second": 51234.5})],
    ...     terminal=False)
    >>> table.splitlines()[2].split()[:11]
    ['flights', 'dense', '800', 'test', '100', '4', 'log_loss', '0.25', '0.55', 'yes', '51,234']
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from tfstream.pipelines.tables import cell, render_table


def proper_score(task: str) -> str:
    """The score a run is judged on: ``log_loss`` for a classifier, ``rmse`` for regression."""
    return "rmse" if task == "regression" else "log_loss"


def beats(task: str, scores: Mapping[str, Any], baselines: Mapping[str, Any], margin: float) -> dict[str, Any]:
    """Whether the model's proper score is lower than the best trivial baseline's by
    ``margin`` (relative: ``model < best × (1 - margin)``).

    Returns:
        ``{metric, model, baseline, against, margin, beats}``: ``baseline`` is the best
        baseline's score and ``against`` its name (None when no baseline was scored,
        and then ``beats`` is false).
    """
    metric = proper_score(task)
    scored = [(b[metric], name) for name, b in baselines.items()
              if isinstance(b, Mapping) and b.get(metric) is not None]
    best, against = min(scored) if scored else (None, None)
    model = scores.get(metric)
    won = model is not None and best is not None and model < best * (1 - margin)
    return {"metric": metric, "model": model, "baseline": best, "against": against, "margin": margin,
            "beats": bool(won)}


def headline(metrics: Mapping[str, Any]) -> tuple[str, Any, Any]:
    """``(metric name, eval value, baseline value)`` of a run's metrics.json: its proper
    score (`beats`). A metrics.json written before tfstream reported one gives its
    accuracy (classification) or mean squared error (regression); a missing figure is
    None."""
    judged = metrics.get("beats")
    if isinstance(judged, Mapping):
        return judged.get("metric"), judged.get("model"), judged.get("baseline")
    scores, base = metrics.get("eval") or {}, metrics.get("baseline") or {}
    if metrics.get("task") == "regression":
        return "mse", scores.get("loss"), base.get("mse")
    return "accuracy", scores.get("accuracy"), base.get("accuracy")


def also(metrics: Mapping[str, Any]) -> str:
    """The other eval figures, with the best baseline's in brackets: accuracy and
    macro-F1 for a classifier, MAE and R² for regression ('' for an older metrics.json)."""
    scores, base = metrics.get("eval") or {}, metrics.get("baseline") or {}
    if not isinstance(metrics.get("beats"), Mapping):
        return ""
    if metrics.get("task") == "regression":
        maes = [b["mae"] for b in base.values() if isinstance(b, Mapping) and b.get("mae") is not None]
        return f"MAE {cell(scores.get('mae'))} ({cell(min(maes) if maes else None)}), R² {cell(scores.get('r2'))}"
    prior = base.get("train_prior") or {}
    return (f"accuracy {cell(scores.get('accuracy'))} ({cell(prior.get('accuracy'))}), "
            f"macro-F1 {cell(scores.get('macro_f1'))} ({cell(prior.get('macro_f1'))})")


def format_summary(runs: Sequence[tuple[str, Mapping[str, Any]]], *, terminal: Optional[bool] = None) -> str:
    """One row per run's metrics.json: the proper score next to the best trivial
    baseline's, and the other figures (`also`), with the scored split named and counted
    (``eval_split``; ``eval`` in metrics written before it was recorded), and the
    training split counted, whatever their names. A model trained on a Keras backend
    other than TensorFlow names it: ``dense (jax)``."""
    rows = []
    for name, m in runs:
        metric, value, base = headline(m)
        scored = m.get("eval_split") or "eval"
        backend = m.get("backend") or "tensorflow"  # not recorded before backends: TensorFlow
        model = m["model"] if backend == "tensorflow" else f"{m['model']} ({backend})"
        rows.append([name, model, m["examples"].get(m.get("train_split") or "train"), scored,
                     m["examples"].get(scored), m["epochs_run"], metric, value, base, m.get("beats_baseline"),
                     m.get("train_examples_per_second"), also(m)])
    return render_table(
        ["run", "model", "train", "eval split", "eval", "epochs", "metric", "eval value", "baseline", "beats",
         "train ex/s", "also (baseline)"], rows, terminal=terminal)
