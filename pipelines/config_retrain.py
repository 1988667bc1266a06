"""The job config's ``retrain:`` section: scheduled retraining (`tfstream retrain`).

Raw input arrives in spans (a day's, a month's files). ``source.path`` names them with a
``{span}`` placeholder, e.g. ``raw/flights/span={span}/*.csv``. Each span is preprocessed
into a dataset of its own, ``<datasets_dir>/<name>/span=<span>/``; the candidate model
trains on the last ``window`` spans, is gated against the champion on the newest span's
eval split, and is promoted into ``<models_dir>/<name>/`` (see `tfstream.retraining`).

Example:
    >>> r = RetrainConfig(window=3)
    >>> r.window, r.metric, r.keep_versions
    (3, None, 5)
    >>> span_parts("raw/span={span}/*.csv")
    ('raw/span=', '/*.csv')
    >>> span_parts("raw/*.csv")
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: source.path: with a retrain: section, mark the span in the path with {span} (e.g. raw/span={span}/*.csv); got 'raw/*.csv'
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal, Optional

from pydantic import Field, StrictBool, StrictStr, model_validator

from tfstream.pipelines.config_errors import ConfigError
from tfstream.pipelines.config_errors import check as _check, show as _show
from tfstream.pipelines.config_types import Float as _Float, Int as _Int
from tfstream.pipelines.config_types import Section as _Section, within as _within

SPAN = "{span}"
# The metrics a gate may compare, and whether lower is better.
LOWER_IS_BETTER = {"log_loss": True, "accuracy": False, "macro_f1": False, "auc": False,
                   "rmse": True, "mae": True, "r2": False}
CLASSIFICATION_METRICS = ("log_loss", "accuracy", "macro_f1", "auc")
REGRESSION_METRICS = ("rmse", "mae", "r2")


class RetrainConfig(_Section):
    """Scheduled retraining: spans in, a gated champion out."""

    _key_path = "retrain"
    window: _Int = Field(3, description="The candidate trains on the newest this many spans (1..10000), read as one "
                                        "stream; their statistics are merged from their manifests.")
    datasets_dir: StrictStr = Field("datasets", description="Each span's dataset is written to "
                                                            "`<datasets_dir>/<name>/span=<span>/`.")
    models_dir: StrictStr = Field("models", description="The model registry: `<models_dir>/<name>/` holds "
                                                        "`versions/<n>/`, the `CHAMPION` pointer and `runs.jsonl`.")
    metric: Optional[Literal["log_loss", "accuracy", "macro_f1", "auc", "rmse", "mae", "r2"]] = Field(
        None, description="The gate's metric on the newest span's eval split (default: log_loss for a classifier, "
                          "rmse for regression; auc for a binary label only).")
    min_improvement: _Float = Field(
        0.0, description="The candidate replaces the champion when its metric is better by more than this fraction "
                         "of the champion's (0 <= x < 1; 0: strictly better).")
    significance: _Float = Field(
        0.01, description="The candidate must beat the trivial baseline and the champion beyond noise: a paired test "
                          "on the per-example proper score (log-loss; squared error for regression) of the gate "
                          "data, at this one-sided significance (0 < x <= 0.5; 0.01: z > 2.33; 0.5: any "
                          "improvement of the mean).")
    keep_versions: _Int = Field(5, description="Model versions kept (1..1000); older ones are removed, never the "
                                               "champion or the one before it.")
    warm_start: StrictBool = Field(True, description="Start the candidate from the champion's weights when the "
                                                     "schema and the model are the same (vocabularies are extended, "
                                                     "never reordered); otherwise it trains from scratch.")

    @model_validator(mode="after")
    def _rules(self) -> RetrainConfig:
        _within("retrain.window", self.window, 1, 10_000, "a span is a dataset read in parallel with the others")
        _check(0 <= self.min_improvement < 1,
               f"retrain.min_improvement: expected a fraction 0 <= x < 1, got {_show(self.min_improvement)}")
        _check(0 < self.significance <= 0.5,
               f"retrain.significance: expected 0 < x <= 0.5, got {_show(self.significance)}")
        _within("retrain.keep_versions", self.keep_versions, 1, 1000, "each version is a whole model and export")
        for key in ("datasets_dir", "models_dir"):
            _check(bool(getattr(self, key)) and "://" not in getattr(self, key),
                   f"retrain.{key}: expected a local directory, got {_show(getattr(self, key))} (retraining locks "
                   f"and replaces files atomically, which object stores cannot do)")
        return self

    def gate_metric(self, task: str) -> str:
        """The metric the gate compares for a label of ``task``.

        Raises:
            ConfigError: a metric the task does not have.
        """
        if self.metric is None:
            return "rmse" if task == "regression" else "log_loss"
        allowed = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
        if task == "multiclass":
            allowed = tuple(m for m in allowed if m != "auc")
        _check(self.metric in allowed, f"retrain.metric: {_show(self.metric)} is not a metric of a {task} label; "
                                       f"use one of {_show(list(allowed))}")
        return self.metric


def span_parts(path: Optional[str]) -> tuple[str, str]:
    """``source.path`` split around its one ``{span}``: ``(before, after)``.

    Raises:
        ConfigError: no ``{span}``, more than one, or one inside a glob.
    """
    if path is None or SPAN not in path:
        raise ConfigError(f"source.path: with a retrain: section, mark the span in the path with {SPAN} (e.g. "
                          f"raw/span={SPAN}/*.csv); got {_show(path)}")
    _check(path.count(SPAN) == 1, f"source.path: {SPAN} appears {path.count(SPAN)} times; mark the span once")
    before, after = path.split(SPAN)
    _check(not before.startswith("pkg:") and "://" not in before,
           f"source.path: spans are local files (a folder per span); got {_show(path)}")
    return before, after


def dataset_fingerprint(config: Any) -> str:
    """SHA-256 of the settings of a job config (`JobConfig`) that decide a dataset's
    records and statistics: source, features, label, split, output, validation. A span's
    dataset written with another fingerprint is written again; model, training, reading
    and retraining settings are not part of it. Manifests record it as
    ``options.config_sha256``.

    Example:
        >>> from tfstream.pipelines.config import load_config, replace
        >>> job = load_config("configs/flights_dense.yaml")
        >>> dataset_fingerprint(job) == dataset_fingerprint(replace(job, train=replace(job.train, epochs=1)))
        True
    """
    data = config.to_json()
    content = {k: data[k] for k in ("source", "features", "label", "split", "output", "validation")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode("utf-8")).hexdigest()
