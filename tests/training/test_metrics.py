"""The trivial baselines, the scores of the evaluation pass, and what `summary` prints:
no Keras needed (these run in the fast loop)."""

import math

import numpy as np
import pytest

from tfstream.training.evaluation import ClassificationScores, RegressionScores
from tfstream.training.metrics import also, beats, format_summary, headline


def _batches(n, size):
    return [slice(i, i + size) for i in range(0, n, size)]


def test_the_prior_is_scored_by_log_loss_from_the_class_counts():
    """The training prior's log-loss on the eval split is -Σ p_eval(c) log p_train(c),
    whatever the order and batching of the eval labels."""
    rng = np.random.default_rng(0)
    train_counts = [50, 30, 20]
    labels = rng.choice(3, size=1000, p=[0.2, 0.3, 0.5])  # the eval split leans the other way
    probs = rng.dirichlet([1, 1, 1], size=1000)
    scores = ClassificationScores(["a", "b", "c"], train_counts)
    for part in _batches(1000, 96):
        scores.update(labels[part], probs[part])
    model, baselines = scores.result()
    p_train = np.array(train_counts) / 100
    p_eval = np.bincount(labels, minlength=3) / 1000
    prior = baselines["train_prior"]
    assert prior["log_loss"] == pytest.approx(-(p_eval * np.log(p_train)).sum(), rel=1e-12)
    assert prior["class"] == "a" and prior["accuracy"] == pytest.approx(p_eval[0])
    # always "a": F1 of a = 2·n_a / (n + n_a); b and c have no true positive (0)
    assert prior["macro_f1"] == pytest.approx(2 * p_eval[0] / (1 + p_eval[0]) / 3)
    assert baselines["eval_majority"] == {"class": "c", "accuracy": pytest.approx(p_eval[2])}
    picked = np.clip(probs[np.arange(1000), labels], 1e-7, 1 - 1e-7)
    assert model["log_loss"] == pytest.approx(-np.log(picked).mean(), rel=1e-12)
    predicted = probs.argmax(axis=1)
    assert model["accuracy"] == pytest.approx((predicted == labels).mean())
    f1 = [2 * ((predicted == c) & (labels == c)).sum() / ((predicted == c).sum() + (labels == c).sum())
          for c in range(3)]
    assert model["macro_f1"] == pytest.approx(np.mean(f1))


def test_balanced_classes_make_no_arbitrary_baseline():
    """The issue's case: with balanced training classes the majority class is a coin
    toss; the prior's log-loss is log(k) on any eval split, and a model that only
    predicts the prior does not beat it."""
    scores = ClassificationScores([str(i) for i in range(4)], [25, 25, 25, 25])
    labels = np.array([3] * 24 + [0] * 1 + [1] * 37 + [2] * 38)
    scores.update(labels, np.full((100, 4), 0.25))
    model, baselines = scores.result()
    assert baselines["train_prior"]["log_loss"] == pytest.approx(math.log(4))
    judged = beats("multiclass", model, baselines, margin=0.01)
    assert judged["against"] == "train_prior" and judged["beats"] is False


def test_regression_scores_in_the_labels_units():
    rng = np.random.default_rng(1)
    y = np.exp(rng.normal(7, 1, size=500))
    pred = y * np.exp(rng.normal(0, 0.2, size=500))
    scores = RegressionScores({"train_mean": 1500.0, "train_median": 1100.0})
    for part in _batches(500, 64):
        scores.update(y[part], pred[part])
    model, baselines = scores.result()
    assert model["rmse"] == pytest.approx(np.sqrt(((y - pred) ** 2).mean()), rel=1e-12)
    assert model["mae"] == pytest.approx(np.abs(y - pred).mean(), rel=1e-12)
    assert model["r2"] == pytest.approx(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum(), rel=1e-9)
    for name, c in (("train_mean", 1500.0), ("train_median", 1100.0)):
        assert baselines[name]["value"] == c
        assert baselines[name]["rmse"] == pytest.approx(np.sqrt(((y - c) ** 2).mean()), rel=1e-12)
        assert baselines[name]["mae"] == pytest.approx(np.abs(y - c).mean(), rel=1e-12)
    judged = beats("regression", model, baselines, margin=0.01)
    assert judged["metric"] == "rmse" and judged["beats"] is True
    assert judged["baseline"] == min(b["rmse"] for b in baselines.values())


def test_a_diverged_regression_scores_none_not_infinity():
    scores = RegressionScores({"train_mean": 1.0})
    scores.update(np.array([1.0, 2.0]), np.array([np.inf, 1.0]))
    model, _ = scores.result()
    assert model == {"rmse": None, "mae": None, "r2": None}
    assert beats("regression", model, scores.result()[1], 0.01)["beats"] is False


def test_the_margin_is_relative():
    baselines = {"train_mean": {"rmse": 100.0}, "train_median": {"rmse": 90.0}}
    assert beats("regression", {"rmse": 89.0}, baselines, 0.01) == {
        "metric": "rmse", "model": 89.0, "baseline": 90.0, "against": "train_median", "margin": 0.01, "beats": True}
    assert beats("regression", {"rmse": 89.5}, baselines, 0.01)["beats"] is False  # better, by less than 1%
    assert beats("regression", {"rmse": 89.5}, baselines, 0.0)["beats"] is True
    assert beats("regression", {"rmse": 1.0}, {}, 0.01) == {
        "metric": "rmse", "model": 1.0, "baseline": None, "against": None, "margin": 0.01, "beats": False}


def _run(**metrics):
    return {"model": "dense", "examples": {"train": 800, "eval": 100}, "epochs_run": 2,
            "train_examples_per_second": 1234.5, **metrics}


def test_summary_reads_old_and_new_metrics():
    """metrics.json files written before the proper scores (accuracy or MSE headline, a
    single baseline, maybe fields missing) still make a row."""
    old_binary = _run(task="binary", eval={"accuracy": 0.9, "auc": 0.8, "loss": 0.3},
                      baseline={"name": "majority_class", "class": "no", "accuracy": 0.76}, beats_baseline=True)
    old_regression = _run(task="regression", eval={"loss": 12.5, "mae": 2.0},
                          baseline={"name": "train_mean", "mse": 40.0}, beats_baseline=True)
    bare = {"task": "multiclass", "model": "lstm", "examples": {}, "epochs_run": 1}
    new_regression = _run(task="regression", eval={"rmse": 175.0, "mae": 137.2, "r2": 0.9408},
                          baseline={"train_mean": {"value": 988.8, "rmse": 740.5, "mae": 569.7, "r2": -0.06},
                                    "train_median": {"value": 872.0, "rmse": 776.8, "mae": 590.7, "r2": -0.17}},
                          beats_baseline=True)
    new_regression["beats"] = beats("regression", new_regression["eval"], new_regression["baseline"], 0.01)
    assert headline(old_binary) == ("accuracy", 0.9, 0.76) and also(old_binary) == ""
    assert headline(old_regression) == ("mse", 12.5, 40.0)
    assert headline(bare) == ("accuracy", None, None)
    assert headline(new_regression) == ("rmse", 175.0, 740.5)
    assert also(new_regression) == "MAE 137.2 (569.7), R² 0.9408"
    rows = format_summary([("a", old_binary), ("b", old_regression), ("c", bare), ("d", new_regression)],
                          terminal=False).splitlines()
    assert rows[0].split()[:11] == ["run", "model", "train", "eval", "split", "eval", "epochs", "metric", "eval",
                                    "value", "baseline"]
    assert rows[2].split() == ["a", "dense", "800", "eval", "100", "2", "accuracy", "0.9", "0.76", "yes", "1,234"]
    assert rows[3].split() == ["b", "dense", "800", "eval", "100", "2", "mse", "12.5", "40", "yes", "1,234"]
    assert rows[4].split() == ["c", "lstm", "-", "eval", "-", "1", "accuracy", "-", "-", "-", "-"]
    assert rows[5].split() == ["d", "dense", "800", "eval", "100", "2", "rmse", "175", "740.5", "yes", "1,234", "MAE",
                               "137.2", "(569.7),", "R²", "0.9408"]
