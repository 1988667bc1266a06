"""The evaluation pass: the eval split scored once, streamed, in the label's units, next
to the trivial baselines built from the training split's statistics.

One pass over the eval split predicts each batch and adds it to running sums (nothing
holds the split): a regression model's predictions are first turned back into the
label's units (`LabelScaling.invert`), so RMSE, MAE and R² are in the label's units
whatever the model learned. The trivial baselines are constants known before training,
scored on the same labels in the same pass:

* classification: the training split's class prior (class counts ÷ total) as the
  predicted probabilities, scored by log-loss; its hard prediction is the training
  majority class (accuracy, macro-F1). The eval split's own most frequent class is
  reported too (``eval_majority``): the best constant accuracy, known only in hindsight,
  so never a baseline to beat.
* regression: the training mean and the training median (the quantile sketch's, rank
  error well under 1%), each scored by RMSE, MAE and R².

Probabilities are clipped to ``[1e-7, 1 - 1e-7]`` before a log, as Keras does, so one
confident mistake, or a class the training split never saw, costs a finite amount.
Macro-F1 averages the classes that occur in the eval labels or in the predictions (as
scikit-learn does), a class with no true positive scoring 0.

Example:
    >>> s = ClassificationScores(["no", "yes"], train_counts=[3, 1])
    >>> s.update(np.array([0, 1, 1, 0]), np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.7, 0.3]]))
    >>> model, baselines = s.result()
    >>> round(model["accuracy"], 2), round(model["macro_f1"], 3), baselines["train_prior"]["class"]
    (0.75, 0.733, 'no')
    >>> r = RegressionScores({"train_mean": 2.0})
    >>> r.update(np.array([1.0, 3.0]), np.array([1.5, 2.5]))
    >>> r.result()[0] == {"rmse": 0.5, "mae": 0.5, "r2": 0.75}, r.result()[1]["train_mean"]["rmse"]
    (True, 1.0)
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

EPSILON = 1e-7


def _number(x: float) -> Optional[float]:
    """A score for metrics.json: a float, or None when it is not finite (a diverged model)."""
    x = float(x)
    return x if math.isfinite(x) else None


class ClassificationScores:
    """Log-loss, accuracy and macro-F1 of predicted class probabilities, and of the
    training prior, accumulated batch by batch.

    Args:
        classes: the class names, in index order.
        train_counts: the training split's count of each class.
    """

    def __init__(self, classes: Sequence[str], train_counts: Sequence[int]):
        self.classes = list(classes)
        k = len(self.classes)
        counts = np.asarray(train_counts, dtype=np.float64)
        self.prior = counts / counts.sum() if counts.sum() else np.full(k, 1.0 / k)
        self.majority = int(np.argmax(counts))
        self.n = 0
        self.log_loss = 0.0
        self.prior_log_loss = 0.0
        self.true = np.zeros(k, dtype=np.int64)  # eval labels per class
        self.predicted = np.zeros(k, dtype=np.int64)
        self.hits = np.zeros(k, dtype=np.int64)  # true positives per class

    def update(self, labels, probabilities) -> None:
        """Add a batch: ``labels`` ``[n]`` class indices, ``probabilities`` ``[n, k]``."""
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        probabilities = np.asarray(probabilities, dtype=np.float64)
        k = len(self.classes)
        picked = probabilities[np.arange(labels.size), labels]
        self.log_loss -= float(np.log(np.clip(picked, EPSILON, 1 - EPSILON)).sum())
        self.prior_log_loss -= float(np.log(np.clip(self.prior[labels], EPSILON, 1 - EPSILON)).sum())
        predicted = probabilities.argmax(axis=1)
        self.true += np.bincount(labels, minlength=k)
        self.predicted += np.bincount(predicted, minlength=k)
        self.hits += np.bincount(labels[predicted == labels], minlength=k)
        self.n += labels.size

    def _macro_f1(self, hits, predicted) -> Optional[float]:
        present = (self.true + predicted) > 0
        if not present.any():
            return None
        f1 = 2 * hits[present] / (self.true[present] + predicted[present])
        return float(f1.mean())

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(the model's scores, the baselines' scores)``; None where nothing was scored."""
        if not self.n:
            return {"log_loss": None, "accuracy": None, "macro_f1": None}, {}
        m = self.majority
        # Always the majority class: all its predictions, its labels its only hits.
        constant = np.zeros_like(self.predicted)
        constant[m] = self.n
        constant_hits = np.zeros_like(self.hits)
        constant_hits[m] = self.true[m]
        model = {"log_loss": _number(self.log_loss / self.n), "accuracy": float(self.hits.sum() / self.n),
                 "macro_f1": self._macro_f1(self.hits, self.predicted)}
        best = int(np.argmax(self.true))
        baselines = {
            "train_prior": {"class": self.classes[m], "log_loss": _number(self.prior_log_loss / self.n),
                            "accuracy": float(self.true[m] / self.n),
                            "macro_f1": self._macro_f1(constant_hits, constant)},
            "eval_majority": {"class": self.classes[best], "accuracy": float(self.true[best] / self.n)},
        }
        return model, baselines


class RegressionScores:
    """RMSE, MAE and R² of predictions in the label's units, and of constant
    predictions (the trivial baselines), accumulated batch by batch.

    Args:
        constants: baseline name → the value it always predicts (``train_mean``, ...).
    """

    def __init__(self, constants: Mapping[str, float]):
        self.constants = {name: float(v) for name, v in constants.items()}
        self.n = 0
        self.mean = 0.0  # of the labels, for R²'s total sum of squares (Chan et al.'s update)
        self.m2 = 0.0
        self.sse = 0.0
        self.sae = 0.0
        self.constant_sse = dict.fromkeys(self.constants, 0.0)
        self.constant_sae = dict.fromkeys(self.constants, 0.0)

    def update(self, labels, predictions) -> None:
        """Add a batch: ``labels`` and ``predictions`` ``[n]``, in the label's units."""
        y = np.asarray(labels, dtype=np.float64).reshape(-1)
        p = np.asarray(predictions, dtype=np.float64).reshape(-1)
        if not y.size:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            self.sse += float(((y - p) ** 2).sum())
            self.sae += float(np.abs(y - p).sum())
        for name, c in self.constants.items():
            self.constant_sse[name] += float(((y - c) ** 2).sum())
            self.constant_sae[name] += float(np.abs(y - c).sum())
        n_b, mean_b = y.size, float(y.mean())
        m2_b = float(((y - mean_b) ** 2).sum())
        n = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta ** 2 * self.n * n_b / n
        self.n = n

    def _scores(self, sse: float, sae: float) -> dict[str, Optional[float]]:
        return {"rmse": _number(math.sqrt(sse / self.n)) if math.isfinite(sse) else None,
                "mae": _number(sae / self.n),
                "r2": _number(1 - sse / self.m2) if self.m2 > 0 and math.isfinite(sse) else None}

    def result(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``(the model's scores, the baselines' scores)``; None where nothing was scored."""
        if not self.n:
            return {"rmse": None, "mae": None, "r2": None}, {}
        baselines = {name: {"value": c, **self._scores(self.constant_sse[name], self.constant_sae[name])}
                     for name, c in self.constants.items()}
        return self._scores(self.sse, self.sae), baselines


def example_losses(labels, outputs, task: str) -> np.ndarray:
    """Each example's proper score, lower is better: the log-loss of the true class
    (probabilities clipped as above) for a classifier, the squared error in the label's
    units for regression. Paired per example, two models' losses on the same eval split
    say whether one is better beyond noise (`training.gate.paired_improvement`).

    Args:
        labels: ``[n]`` class indices, or labels in their units.
        outputs: ``[n, k]`` class probabilities (``[n]`` or ``[n, 1]``: a binary
            label's probability of the positive class), or ``[n]`` predictions.
        task: ``binary``, ``multiclass`` or ``regression``.

    Example:
        >>> example_losses(np.array([1, 0]), np.array([0.9, 0.2]), "binary").round(4).tolist()
        [0.1054, 0.2231]
    """
    y = np.asarray(labels).reshape(-1)
    out = np.asarray(outputs, dtype=np.float64)
    if task == "regression":
        with np.errstate(over="ignore", invalid="ignore"):
            return (y.astype(np.float64) - out.reshape(-1)) ** 2
    if task == "binary" and (out.ndim == 1 or out.shape[-1] == 1):
        p = out.reshape(-1)
        out = np.stack([1 - p, p], axis=1)
    picked = out[np.arange(y.size), y.astype(np.int64)]
    return -np.log(np.clip(picked, EPSILON, 1 - EPSILON))


def baseline_losses(labels, manifest, train_split: str) -> np.ndarray:
    """Each example's proper score under the trivial baseline that `metrics.beats` judges
    against: the training class prior, or the training mean (`example_losses`)."""
    label = manifest.label
    stats = manifest.split(train_split).label
    y = np.asarray(labels).reshape(-1)
    if label.task == "regression":
        mean = stats.numbers.mean if stats.numbers is not None and stats.numbers.count else 0.0
        return example_losses(y, np.full(y.shape, float(mean)), "regression")
    counts = np.asarray([(stats.class_counts or {}).get(c, 0) for c in label.classes], dtype=np.float64)
    prior = counts / counts.sum() if counts.sum() else np.full(len(counts), 1.0 / len(counts))
    return example_losses(y, np.broadcast_to(prior, (y.size, prior.size)), label.task)


def evaluate(model, dataset, manifest, train_split: str, label_scaling=None, *,
             losses: Optional[list] = None) -> tuple[dict, dict]:
    """Score ``model`` on ``dataset`` (an eval split read with ``raw_labels=True``, in any
    order), with the trivial baselines from ``train_split``'s statistics.

    Args:
        model: a compiled reference model (`models.build_model`).
        dataset: ``(features, label)`` batches, labels as stored.
        manifest: the dataset's `Manifest`.
        train_split: the split whose statistics make the baselines.
        label_scaling: the regression label's `LabelScaling`, inverted on the
            predictions (None: the model predicts the label's units).
        losses: when given, each batch's ``(labels, example_losses)`` is appended to
            it: the per-example proper scores of a paired comparison.

    Returns:
        ``(eval, baseline)`` for metrics.json: the model's scores (with the AUC for a
        binary label), and each trivial baseline's.
    """
    label = manifest.label
    stats = manifest.split(train_split).label
    if label.task == "regression":
        numbers = stats.numbers
        constants = {}
        if numbers is not None and numbers.count:
            constants["train_mean"] = numbers.mean
            if numbers.quantiles:
                constants["train_median"] = numbers.quantiles[len(numbers.quantiles) // 2]
        scores = RegressionScores(constants)
    else:
        counts = stats.class_counts or {}
        scores = ClassificationScores(label.classes, [counts.get(c, 0) for c in label.classes])
    import keras

    auc = None
    if label.task == "binary":
        auc = keras.metrics.AUC(name="auc")  # (200 thresholds, as Keras reports it during fit)
    # JAX's and PyTorch's predict_on_batch take arrays, not tf.Tensors (fit converts its own).
    as_input = (lambda f: f) if keras.backend.backend() == "tensorflow" else \
        (lambda f: {k: v.numpy() for k, v in f.items()})
    for features, labels in dataset:
        out = np.asarray(model.predict_on_batch(as_input(features)), dtype=np.float64)
        if losses is not None:
            units = label_scaling.invert(out) if label.task == "regression" and label_scaling is not None else out
            losses.append((labels.numpy(), example_losses(labels.numpy(), units, label.task)))
        if label.task == "regression":
            out = out.reshape(-1)
            scores.update(labels.numpy(), label_scaling.invert(out) if label_scaling is not None else out)
        elif label.task == "binary":
            p = out.reshape(-1, 1)
            scores.update(labels.numpy(), np.concatenate([1 - p, p], axis=1))
            auc.update_state(labels.numpy().reshape(-1, 1), p)
        else:
            scores.update(labels.numpy(), out)
    model_scores, baselines = scores.result()
    if auc is not None:
        model_scores["auc"] = float(auc.result()) if scores.n else None
    return model_scores, baselines
