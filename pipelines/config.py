"""Typed job configs, loaded from YAML.

One config drives both `tfstream preprocess` and `tfstream train`. It is read with
`config_yaml.read_yaml` (safe YAML whose size, depth and keys are checked before it is
built) into frozen pydantic models. Unknown keys are rejected with their key
path and the closest valid key; types are strict (``"3"`` is not an integer, ``true`` is
not a number, NaN is refused); ranges (every number has an upper bound, given in its
description) and the rules between keys are checked on load. Whatever is wrong,
one `ConfigError` names the first problem in one line. `json_schema` describes every
key, for editors (`tfstream config schema`).

Example:
    >>> job = load_config({"name": "demo", "source": {"format": "csv", "path": "rows.csv"},
    ...                    "features": [{"name": "x", "type": "float"}],
    ...                    "label": {"column": "y", "task": "regression"}, "model": {"type": "dense"}})
    >>> job.reader.batch_size, replace(job, train=replace(job.train, epochs=4)).train.epochs
    (256, 4)
    >>> try:
    ...     replace(job.reader, batch_sise=32)
    ... except ConfigError as e:
    ...     print(e)
    reader.batch_sise: unknown key; did you mean 'batch_size'?
"""

from __future__ import annotations

import math
import os
import re
from typing import Any, Literal, Mapping, Optional, Union

from pydantic import Field, StrictBool, StrictFloat, StrictInt, StrictStr, model_validator

from tfstream.pipelines.config_errors import ConfigError
from tfstream.pipelines.config_errors import check as _check, cut as _cut, show as _show
from tfstream.pipelines.config_splits import CarveConfig, SplitConfig  # noqa: F401 - public here too
from tfstream.pipelines.config_splits import SplitPlan, plan_splits
from tfstream.pipelines.config_types import (FLOAT32_MAX, MAX_CLASSES, MAX_EMBEDDING_DIM, MAX_LAYERS,
                                             MAX_RECORD_VALUES, MAX_SEQUENCE_STEPS, MAX_SHARD_MB, MAX_SHARDS,
                                             MAX_STEP_VALUES, MAX_UNITS, MAX_VECTOR_VALUES)
from tfstream.pipelines.config_types import Float as _Float, FrozenMapping as _Mapping, Int as _Int, Items as _Items
from tfstream.pipelines.config_types import Section as _Section, validate as _validate, within as _within
from tfstream.pipelines.config_types import replace  # noqa: F401 - public here: `config.replace`
from tfstream.pipelines.config_retrain import SPAN, RetrainConfig, span_parts
from tfstream.pipelines.config_sequence import SequenceTableConfig, check_sequence_features  # noqa: F401 - public here too
from tfstream.pipelines.config_source import SourceConfig  # noqa: F401 - public here too
from tfstream.pipelines.config_yaml import check_size, read_yaml
from tfstream.pipelines.read_options import ReadOptions
from tfstream.transforms.analyzers import MAX_VOCABULARY
from tfstream.transforms.schema import Feature, Label, Schema
from tfstream.transforms.validation import FeatureRule, LabelRule, RowRules


# --------------------------------------------------------------------------- sections


class FeatureConfig(_Section):
    """One model input: how to read it from a source row, and what happens to a value
    that is not usable (a rejected or dropped row goes to the quarantine, with why)."""

    _key_path = "features[]"
    name: StrictStr = Field(description="Letters, digits and _ (it becomes a Keras input name).")
    type: Literal["float", "int", "string", "sequence"] = Field(
        description="float or int (numeric), string (categorical), or sequence (of float vectors, `dim` per step).")
    column: Optional[StrictStr] = Field(None, description="The source column (default: the name).")
    columns: _Items[StrictStr] = Field((), description="Numbers: several scalar columns → one vector; a sequence in "
                                                       "a long-format table: one column per channel (`dim` of them).")
    shape: _Items[_Int] = Field((), description="[] for a scalar, [k] for a vector of k values (k <= 10,000,000).")
    dim: Optional[_Int] = Field(None, description="sequence (required): values per step (1..100,000).")
    on_missing: Literal["error", "drop", "default", "impute"] = Field(
        "error", description="A missing value (empty cell, NA string, null, NaN in npz/Parquet): error (the row is "
                             "rejected into the quarantine), drop (dropped, counted), default (the `default` "
                             "value), or impute (numbers: the training split's mean, also for a NaN served).")
    default: Optional[Union[StrictInt, StrictFloat, StrictStr]] = Field(
        None, description="With `on_missing: default` (only then): the value.")
    on_nan: Literal["error", "drop", "impute"] = Field(
        "error", description="±inf in a float feature, NaN or ±inf in a sequence: as `on_missing` (a sequence imputes "
                             "the per-step mean).")
    max_length: Optional[_Int] = Field(None, description="sequence: the most steps kept (1..10,000,000, and "
                                                          "max_length x dim <= 2**29; default: all).")
    on_too_long: Literal["truncate", "drop", "error"] = Field(
        "truncate", description="A sequence longer than `max_length`: cut to its first steps, dropped, or rejected.")
    vocab_size: Optional[_Int] = Field(None, description="string: the training split's most frequent tokens "
                                                              "kept (1..100,000; default: all, up to 100,000).")
    oov_buckets: _Int = Field(1, description="string: out-of-vocabulary ids (1..1000), shared by the other "
                                                  "tokens and by tokens first seen at serving time.")

    @model_validator(mode="after")
    def _rules(self) -> FeatureConfig:
        where = f"features[{_cut(self.name, 80)}]"
        _check(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name) is not None,
               f"{where}.name: use letters, digits and _ (it becomes a Keras input name)")
        if self.on_missing == "impute":
            _check(self.type in ("float", "int"),
                   f"{where}.on_missing: impute replaces a missing number by the training mean; a {self.type} "
                   f"feature needs error, drop{'' if self.type == 'sequence' else ' or default'}")
        if self.on_nan != "error":
            _check(self.type in ("float", "sequence"),
                   f"{where}.on_nan: only float and sequence features hold NaN or inf; remove it")
        if self.max_length is not None:
            _check(self.type == "sequence", f"{where}.max_length: only a sequence feature has a length")
            _within(f"{where}.max_length", self.max_length, 1, MAX_SEQUENCE_STEPS,
                    "longer sequences are truncated to it; leave it out to keep them whole")
        if self.vocab_size is not None or self.oov_buckets != 1:
            _check(self.type == "string", f"{where}: vocab_size and oov_buckets belong to string features")
        _within(f"{where}.vocab_size", self.vocab_size, 1, MAX_VOCABULARY,
                f"vocabularies keep at most {MAX_VOCABULARY} tokens; leave it out to keep them all")
        _within(f"{where}.oov_buckets", self.oov_buckets, 1, 1000, "more buckets only spread unseen tokens thinner")
        _check((self.default is not None) == (self.on_missing == "default"),
               f"{where}: set `default:` exactly when `on_missing: default`")
        if self.default is not None:
            # typed after the fields, as it depends on `type`; frozen, hence object.__setattr__
            object.__setattr__(self, "default", self._typed_default(where))
        _check(not (self.column and self.columns), f"{where}: give `column` or `columns`, not both")
        if self.type == "sequence":
            _check(self.dim is not None and self.dim >= 1,
                   f"{where}.dim: a sequence feature needs `dim` (values per step) >= 1")
            _within(f"{where}.dim", self.dim, 1, MAX_STEP_VALUES,
                    "each step's values are one tensor row; a larger step is not a sequence of vectors")
            _check(self.max_length is None or self.max_length * self.dim <= MAX_RECORD_VALUES,
                   f"{where}.max_length: {self.max_length} steps of {self.dim} values are more than a record holds "
                   f"({MAX_RECORD_VALUES} float32 values: a record is one protobuf, at most 2 GiB); lower it")
            _check(not self.shape, f"{where}: a sequence takes `column` (or `columns`) and `dim` only")
        else:
            _check(self.dim is None, f"{where}.dim: only a sequence feature has `dim`")
        if self.columns:
            _check(self.type in ("float", "int", "sequence"),
                   f"{where}.columns: only numeric vectors and sequences span several columns")
            _check(not self.shape or self.shape == (len(self.columns),),
                   f"{where}.shape: {_show(list(self.shape))} does not match {len(self.columns)} columns")
        _check(len(self.shape) <= 1 and all(d >= 1 for d in self.shape),
               f"{where}.shape: expected [] or [k] with k >= 1; got {_show(list(self.shape))}")
        for k in self.shape:
            _within(f"{where}.shape[0]", k, 1, MAX_VECTOR_VALUES,
                    "values per example; the model's first layer holds that many weights per unit")
        _check(not (self.type == "string" and self.shape), f"{where}.shape: a string feature is a scalar")
        return self

    def _typed_default(self, where: str) -> Union[int, float, str]:
        value = self.default
        if self.type == "sequence":
            raise ConfigError(f"{where}.on_missing: a sequence has no default; use error or drop")
        if self.type == "string":
            _check(isinstance(value, str),
                   f"{where}.default: a string feature needs a string default, got {_show(value)}")
            return value
        _check(not isinstance(value, str), f"{where}.default: a {self.type} feature needs a number, got {_show(value)}")
        if self.type == "int":
            _check(isinstance(value, int) or value.is_integer(),
                   f"{where}.default: an int feature needs an integer, got {_show(value)}")
            _within(f"{where}.default", int(value), -2**63, 2**63 - 1, "an int feature is stored as int64")
            return int(value)
        _check(math.isfinite(value) and abs(value) <= FLOAT32_MAX,
               f"{where}.default: a float feature needs a finite float32 number, got {_show(value)}")
        return float(value)

    def to_feature(self) -> Feature:
        """The feature as the dataset's schema has it."""
        if self.type == "sequence":
            return Feature(self.name, "sequence", "float32", (int(self.dim),))
        if self.type == "string":
            return Feature(self.name, "categorical", "string")
        shape = (len(self.columns),) if self.columns else self.shape
        return Feature(self.name, "numeric", "float32" if self.type == "float" else "int64", shape)

    def to_rule(self) -> FeatureRule:
        """How the feature is read from a source row."""
        return FeatureRule(feature=self.to_feature(), columns=self.columns or (self.column or self.name,),
                           on_missing=self.on_missing, default=self.default, on_nan=self.on_nan,
                           max_length=self.max_length, on_too_long=self.on_too_long)


class LabelConfig(_Section):
    """The training target; a classifier's needs one of ``threshold``, ``classes`` or ``num_classes``."""

    _key_path = "label"
    column: StrictStr = Field(description="The source column.")
    task: Literal["binary", "multiclass", "regression"] = Field(description="What the model predicts.")
    name: StrictStr = Field("label", description="The label's name in the records.")
    threshold: Optional[_Float] = Field(None, description="binary from a number: `value > threshold`.")
    classes: _Items[Union[StrictStr, StrictInt]] = Field(
        (), description="The raw values, in index order; integers are taken as their text (`[1, 2]` matches a "
                        "CSV's \"1\" and an npz or Parquet column's 1 or 1.0).")
    num_classes: Optional[_Int] = Field(None, description="The column holds class indices 0..n-1 (2..100,000).")
    on_missing: Literal["error", "drop"] = Field("error", description="A missing label: reject or drop the row.")
    transform: Literal["none", "log1p"] = Field(
        "none", description="regression: the model learns T(label): log1p (log(1 + y), for positive targets "
                            "spread over orders of magnitude, such as prices; a label <= -1 is rejected) or none. "
                            "Predictions and metrics are in the label's units.")
    standardize: Optional[StrictBool] = Field(
        None, description="regression: the model learns (T(label) - mean) ÷ std, from the training split's "
                          "statistics (default: true for regression; classes are never standardized).")

    @model_validator(mode="after")
    def _rules(self) -> LabelConfig:
        given = sum(x is not None for x in (self.threshold, self.classes or None, self.num_classes))
        if self.task == "regression":
            _check(given == 0, "label: a regression label takes no threshold, classes or num_classes")
        else:
            _check(given == 1, f"label: a {self.task} label needs exactly one of threshold "
                               "(binary only), classes, num_classes")
            _check(self.transform == "none", f"label.transform: only a regression label is transformed; remove "
                                             f"`transform: {self.transform}`")
            _check(self.standardize is None, "label.standardize: only a regression label is standardized; remove it")
        if self.classes:
            text = tuple(str(c) for c in self.classes)  # frozen, hence object.__setattr__
            twice = sorted({c for c in text if text.count(c) > 1})
            _check(not twice, f"label.classes: {_show(twice)} given twice (integers are taken as their text)")
            object.__setattr__(self, "classes", text)
        if self.threshold is not None:
            _check(self.task == "binary", "label.threshold: only a binary label has a threshold")
        if self.num_classes is not None:
            _check(self.num_classes >= 2, f"label.num_classes: expected >= 2, got {_show(self.num_classes)}")
            _within("label.num_classes", self.num_classes, 2, MAX_CLASSES,
                    "the manifest names every class and the model has an output per class; for more, "
                    "use a regression label or group the classes")
        if self.task == "binary" and self.threshold is None:
            n = len(self.classes) if self.classes else self.num_classes
            _check(n == 2, f"label: a binary label has 2 classes, got {_show(n)}")
        return self

    def to_label(self) -> Label:
        """The label as the dataset's schema has it."""
        if self.task == "regression":
            return Label(self.name, "regression", transform=self.transform)
        if self.threshold is not None:
            t = f"{self.threshold:g}"
            return Label(self.name, "binary", (f"{self.column}<={t}", f"{self.column}>{t}"))
        classes = self.classes or tuple(str(i) for i in range(int(self.num_classes)))
        return Label(self.name, self.task, classes)

    @property
    def standardized(self) -> bool:
        """Whether the model learns the standardized label (``standardize``, by default
        true for a regression label)."""
        return self.task == "regression" if self.standardize is None else self.standardize

    def to_rule(self) -> LabelRule:
        """How the label is read from a source row."""
        return LabelRule(label=self.to_label(), column=self.column, threshold=self.threshold,
                         raw_classes=self.classes, on_missing=self.on_missing)


class OutputConfig(_Section):
    """Where and how the dataset is written."""

    _key_path = "output"
    dir: Optional[StrictStr] = Field(None, description="The dataset directory (default: `runs/<name>/dataset`).")
    num_shards: _Mapping[_Int] = Field(
        {}, description="Split name → shard count (1..10000); a split not named gets one from `target_shard_mb`, "
                        "never fewer than round(8 × its share of the rows), at least 1: a hash split's share is its "
                        "fraction; a split given per file, its files' share of the source's bytes; given by a column, "
                        "an equal share of the given splits; a carved split, its fraction of its given split's share.")
    target_shard_mb: _Int = Field(
        128, description="A split not in `num_shards` gets ceil(its records' estimated MiB / this) shards (1..4096), "
                         "at least round(8 × its share), at most 10000; records estimated uncompressed, from the "
                         "source's rows (exact for npz, Parquet, TFDS and arrays, from the size for CSV) and its first "
                         "1,000 rows encoded. 128 (tensorflow-datasets keeps shards within 64 MiB..1 GiB): a 50 GiB "
                         "split gets 400 shards, each small enough for `write_arrays` to sort in memory.")
    compression: Literal["none", "gzip"] = Field("none", description="The shards' compression.")
    snapshot_retention_hours: _Float = Field(
        6.0, description="A replaced snapshot is kept this long (0..8760 hours) for readers still training on it; "
                         "the current and the previous snapshot are always kept.")

    @model_validator(mode="after")
    def _rules(self) -> OutputConfig:
        for name, n in self.num_shards.items():
            _within(f"output.num_shards.{_cut(name, 80)}", n, 1, MAX_SHARDS, "a shard is a file, written by one worker")
        _within("output.target_shard_mb", self.target_shard_mb, 1, MAX_SHARD_MB,
                "one worker writes a whole shard, and `write_arrays` sorts one in memory; larger shards only make "
                "fewer files to read in parallel")
        _within("output.snapshot_retention_hours", self.snapshot_retention_hours, 0, 8760,
                "a replaced snapshot is kept at most a year")
        return self


_SEQUENCE_ONLY = ("cell", "standardize", "conv_layers", "conv_filters",
                  "conv_kernel_size", "conv_strides", "pooling")


class ModelConfig(_Section):
    """The reference model, built by `training.models`."""

    _key_path = "model"
    type: Literal["dense", "lstm"] = Field(
        description="dense for tabular data, lstm for sequences. A config without `model:` only preprocesses.")
    hidden_units: _Items[_Int] = Field((64, 32), description="Dense layers' units, 1..65,536 each, at most 100 "
                                                             "layers (lstm: after the recurrent layers).")
    dropout: _Float = Field(0.0, description="Dropout after each layer (0 <= dropout < 1).")
    embedding_dim: _Int = Field(8, description="dense: the embedding size of string features (1..16,384).")
    lstm_units: _Items[_Int] = Field((64,), description="lstm: the recurrent layers' units (model.cell), "
                                                        "1..65,536 each, at most 100 layers.")
    bidirectional: StrictBool = Field(False, description="lstm: bidirectional recurrent layers.")
    cell: Literal["lstm", "gru"] = Field("gru", description="lstm: the recurrent cell, lstm or gru (one layer per "
                                                             "lstm_units entry).")
    standardize: Literal["none", "per_sequence"] = Field(
        "none", description="lstm: per_sequence z-scores each sequence and channel over its own real steps, inside "
                            "the model (serving does the same); none keeps the training split's normalization only.")
    conv_layers: _Int = Field(2, description="lstm: strided Conv1D layers before the recurrent layers (0..8; 0: "
                                             "none); each shortens a sequence to ceil(length / conv_strides) steps.")
    conv_filters: _Int = Field(64, description="lstm: each Conv1D layer's filters (1..4,096).")
    conv_kernel_size: _Int = Field(9, description="lstm: each Conv1D layer's kernel size in steps (1..1,024).")
    conv_strides: _Int = Field(4, description="lstm: each Conv1D layer's strides (1..conv_kernel_size).")
    pooling: Literal["last", "mean", "max", "mean_max"] = Field(
        "mean_max", description="lstm: what the Dense layers see: the last recurrent layer's final state (last), or "
                            "its outputs pooled over the real steps (mean, max, or mean_max: both, concatenated).")

    @model_validator(mode="after")
    def _rules(self) -> ModelConfig:
        for key in ("hidden_units", "lstm_units"):
            layers = getattr(self, key)
            _check(all(u >= 1 for u in layers), f"model.{key}: every layer needs >= 1 unit")
            _check(len(layers) <= MAX_LAYERS, f"model.{key}: expected at most {MAX_LAYERS} layers, got {len(layers)}")
            for i, units in enumerate(layers):
                _within(f"model.{key}[{i}]", units, 1, MAX_UNITS,
                        "a layer of 65536 units on as many inputs already holds 16 GiB of weights; lower it")
        _check(0 <= self.dropout < 1, f"model.dropout: expected 0 <= dropout < 1, got {_show(self.dropout)}")
        _within("model.embedding_dim", self.embedding_dim, 1, MAX_EMBEDDING_DIM,
                "wider than the largest language models' embeddings; lower it")
        if self.type == "lstm":
            _check(len(self.lstm_units) >= 1, "model.lstm_units: an lstm model needs at least one layer")
        _within("model.conv_layers", self.conv_layers, 0, 8,
                "each layer divides the steps by conv_strides; 8 layers of strides 2 already shorten 256 times")
        _within("model.conv_filters", self.conv_filters, 1, 4096, "wider than any reference Conv1D; lower it")
        _within("model.conv_kernel_size", self.conv_kernel_size, 1, 1024, "a wider window belongs in more layers")
        _within("model.conv_strides", self.conv_strides, 1, self.conv_kernel_size,
                "strides wider than model.conv_kernel_size skip steps that no window sees; lower the strides or "
                "widen the kernel")
        if self.type == "dense":
            # Set and not the default: a dense config written out whole (`to_json`, the
            # manifest's recorded config) loads again.
            changed = sorted(k for k in _SEQUENCE_ONLY if k in self.model_fields_set
                             and getattr(self, k) != type(self).model_fields[k].default)
            _check(not changed, f"model.{changed[0] if changed else ''}: only an lstm model (a sequence feature) "
                                f"has it; remove it, or set model.type: lstm")
        return self


class TrainConfig(_Section):
    """Keras `fit` settings."""

    _key_path = "train"
    epochs: _Int = Field(10, description="The most epochs (1..100000).")
    learning_rate: _Float = Field(1e-3, description="Adam's learning rate (0 < lr < 10).")
    early_stopping_patience: _Int = Field(3, description="Epochs without improvement before stopping "
                                                         "(0..100000; 0: never stop early).")
    train_split: StrictStr = Field("train", description="The split trained on.")
    validation_split: Optional[StrictStr] = Field(None, description="Drives early stopping and the best "
                                                                    "checkpoint (none: the training loss does).")
    eval_split: StrictStr = Field("eval", description="Evaluated once, at the end, and reported (metrics.json "
                                                      "names it); not the validation split.")
    seed: _Int = Field(0, description="Keras's random seed (0..4294967295: it seeds NumPy too).")
    dir: Optional[StrictStr] = Field(None, description="The model directory (default: `runs/<name>/model`).")
    min_improvement: _Float = Field(
        0.01, description="The model beats the trivial baselines when its proper score on the eval split (log-loss; "
                          "RMSE for regression) is this much lower, relatively, than the best baseline's "
                          "(0 <= x < 1; 0.01: 1% lower).")
    tensorboard: StrictBool = Field(True, description="Write TensorBoard logs of the per-epoch metrics into "
                                                      "`<model dir>/logs` (view with `tensorboard --logdir`).")
    strategy: Literal["default", "mirrored", "multi_worker"] = Field(
        "default", description="default: one device; mirrored: tf.distribute.MirroredStrategy over this machine's "
                               "devices (TensorFlow backend); multi_worker: Keras' DataParallel across processes "
                               "on the JAX backend (README: Scaling out).")

    @model_validator(mode="after")
    def _rules(self) -> TrainConfig:
        _check(self.eval_split != self.validation_split,
               f"train.eval_split: {_show(self.eval_split)} is also train.validation_split, which picks the best "
               f"epoch and stops early, so its score would not be held out; validate on another split (carve one "
               f"out of the training split: split.carve: {{split: {self.train_split}, into: {{{self.train_split}: "
               f"0.9, validation: 0.1}}}}), or set train.validation_split: null (the training loss then drives early "
               f"stopping)")
        _within("train.epochs", self.epochs, 1, 100_000, "an epoch is a pass over the training split")
        _check(0 < self.learning_rate < 10,
               f"train.learning_rate: expected 0 < lr < 10, got {_show(self.learning_rate)}")
        _within("train.early_stopping_patience", self.early_stopping_patience, 0, 100_000,
                "more patience than train.epochs allows never stops anything; lower it (0: no early stopping)")
        _within("train.seed", self.seed, 0, 2**32 - 1, "Keras seeds NumPy with it, which takes 0..2**32-1")
        _check(0 <= self.min_improvement < 1,
               f"train.min_improvement: expected a fraction 0 <= x < 1, got {_show(self.min_improvement)}")
        return self


class DriftConfig(_Section):
    """How a run's training-split statistics are compared with the previous run's;
    features added, removed or retyped are always reported."""

    _key_path = "validation.drift"
    on_drift: Literal["warn", "error", "ignore"] = Field(
        "warn", description="warn, error (the run is refused and the previous dataset stays in place), or ignore.")
    max_mean_shift: _Float = Field(0.5, description="Drift: a numeric mean (or a sequence's mean length) moved "
                                                         "by more than this many standard deviations.")
    max_vocab_linf: _Float = Field(0.1, description="Drift: token frequencies moved by more than this "
                                                         "L-infinity distance (as in TensorFlow Data Validation).")

    @model_validator(mode="after")
    def _rules(self) -> DriftConfig:
        _check(self.max_mean_shift > 0,
               f"validation.drift.max_mean_shift: expected > 0, got {_show(self.max_mean_shift)}")
        _check(0 < self.max_vocab_linf <= 1,
               f"validation.drift.max_vocab_linf: expected a fraction in (0, 1], got {_show(self.max_vocab_linf)}")
        return self


class ValidationConfig(_Section):
    """What a run tolerates. Rows that break a rule are rejected into the quarantine
    (``<dataset>/quarantine/*.jsonl``), which says which and why."""

    _key_path = "validation"
    max_bad_fraction: _Float = Field(0.0, description="The largest fraction of the rows read that may be "
                                                           "rejected; more fails the run (0: any rejected row does).")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift from the previous run.")

    @model_validator(mode="after")
    def _rules(self) -> ValidationConfig:
        _check(0 <= self.max_bad_fraction <= 1,
               f"validation.max_bad_fraction: expected a fraction in [0, 1], got {_show(self.max_bad_fraction)}")
        return self


class JobConfig(_Section):
    """A whole job: source → dataset → model."""

    name: StrictStr = Field(description="Letters, digits, '.', '-' and '_'; runs go to `runs/<name>/`.")
    source: SourceConfig = Field(description="Where the raw rows come from.")
    features: _Items[FeatureConfig] = Field(description="The model inputs, at least one.")
    label: LabelConfig = Field(description="The training target.")
    model: Optional[ModelConfig] = Field(None, description="The model trained (a config without one only "
                                                           "preprocesses: `tfstream train` and `run` need it).")
    split: SplitConfig = Field(default_factory=SplitConfig, description="How rows are split.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="The dataset written.")
    reader: ReadOptions = Field(default_factory=ReadOptions, description="How the dataset is read (tf.data).")
    train: TrainConfig = Field(default_factory=TrainConfig, description="How the model is trained.")
    validation: ValidationConfig = Field(default_factory=ValidationConfig, description="What a run tolerates.")
    retrain: Optional[RetrainConfig] = Field(None, description="Scheduled retraining (`tfstream retrain`): spans "
                                                               "marked by {span} in source.path, a training window, "
                                                               "a gate and a model registry.")

    @model_validator(mode="after")
    def _rules(self) -> JobConfig:
        _check(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name) is not None,
               f"name: use letters, digits, '.', '-' and '_'; got {_show(self.name)}")
        _check(len(self.features) >= 1, "features: list at least one feature")
        names = [f.name for f in self.features] + [self.label.name]
        dup = sorted({n for n in names if names.count(n) > 1})
        _check(not dup,
               f"features: the names {_show(dup)} are used twice (the label is named {_show(self.label.name)})")
        plan = self.split_plan()
        if self.split.fractions is None and plan.fractions is not None:  # the default hash split, written out
            object.__setattr__(self, "split", self.split.model_copy(update={"fractions": plan.fractions}))
        self._check_split_names(plan)
        self._check_retrain()
        _check(self.train.strategy != "multi_worker" or self.reader.service is None,
               "reader.service: not with train.strategy: multi_worker (each process reads its own part of the "
               "training split itself); remove reader.service, or train with strategy default or mirrored")
        has_seq = any(f.type == "sequence" for f in self.features)
        if self.model is not None and self.model.type == "lstm":
            _check(has_seq, "model.type: an lstm model needs a feature of type sequence")
        check_sequence_features(self.source, self.features, self.label.column, self.split)
        try:
            self.schema()
        except ValueError as e:
            raise ConfigError(f"features: {e}") from e
        return self

    def _check_split_names(self, plan: SplitPlan) -> None:
        """The train section and ``output.num_shards`` name final splits. Preprocessing
        needs the training split (vocabularies, imputation); the validation and eval
        splits are checked when the config trains (has a model) or sets them."""
        names, t = plan.names, self.train
        defaults = TrainConfig.model_fields
        for key in ("train_split", "validation_split", "eval_split"):
            split = getattr(t, key)
            if split is None or split in names:
                continue
            if key != "train_split" and self.model is None and split == defaults[key].default:
                continue
            if plan.origin == "split.fractions":  # the wording since the hash split came
                raise ConfigError(f"train: split {_show(split)} is not one of split.fractions {_show(sorted(names))}")
            raise ConfigError(f"train.{key}: {_show(split)} is not one of the splits {_show(list(names))} "
                              f"({plan.origin}{' and split.carve' if plan.carve else ''}); set train.{key} to one "
                              f"of them")
        unknown = sorted(set(self.output.num_shards) - set(names))
        _check(not unknown, f"output.num_shards: {_show(unknown)} are not splits; the splits are "
                            f"{_show(sorted(names))} ({plan.origin})")

    def _check_retrain(self) -> None:
        """A ``{span}`` in ``source.path`` marks spans, which only `tfstream retrain` reads."""
        if self.retrain is None:
            _check(SPAN not in (self.source.path or ""),
                   f"source.path: {SPAN} marks spans, which `tfstream retrain` reads; add a retrain: section, or "
                   f"name the files without {SPAN}")
            return
        span_parts(self.source.path)
        _check(self.model is not None, "retrain: needs a model: section (the model it retrains)")
        _check(self.source.splits is None and self.source.tfds is None,
               "retrain: spans are read from source.path with {span}; remove source.splits / source.tfds")
        self.retrain.gate_metric(self.label.task)

    def split_plan(self) -> SplitPlan:
        """What the split settings come to: the final split names, where they come
        from, their expected shares, the router (`config_splits.SplitPlan`).

        Example:
            >>> job = load_config({"name": "d", "source": {"format": "csv", "splits": {"train": "a.csv",
            ...     "test": "b.csv"}}, "features": [{"name": "x", "type": "float"}],
            ...     "label": {"column": "y", "task": "regression"}, "split": {"carve": {"split": "train",
            ...     "into": {"train": 0.9, "validation": 0.1}}}})
            >>> job.split_plan().names, job.model is None
            (('train', 'validation', 'test'), True)
        """
        return plan_splits(self.source.split_patterns() if self.source.splits is not None else None, self.split)

    def split_names(self) -> tuple[str, ...]:
        """The dataset's split names, in order: ``split.fractions``'s, or the given
        splits with the carved one replaced by its parts."""
        return self.split_plan().names

    def require_model(self) -> ModelConfig:
        """The ``model:`` section, which training needs.

        Raises:
            ConfigError: the config has none, saying to add one.
        """
        return self._required("model", "training needs a `model:` section, e.g. `model: {type: dense}` (lstm for "
                                       "sequences); without one the config only preprocesses")

    def require_retrain(self) -> RetrainConfig:
        """The ``retrain:`` section, which `tfstream retrain` needs.

        Raises:
            ConfigError: the config has none, saying what to add.
        """
        return self._required("retrain", "`tfstream retrain` needs a `retrain:` section and {span} in source.path, "
                                         "e.g. `source: {path: raw/span={span}/*.csv}` and `retrain: {window: 3}`")

    def _required(self, key: str, advice: str) -> Any:
        value = getattr(self, key)
        if value is None:
            raise ConfigError(f"{key}: missing; {advice}")
        return value

    def schema(self) -> Schema:
        """The schema of the records this job writes."""
        return Schema(tuple(f.to_feature() for f in self.features), self.label.to_label())

    def imputed_features(self) -> list[str]:
        """Features whose missing or non-finite values are replaced by the training mean."""
        return [f.name for f in self.features if "impute" in (f.on_missing, f.on_nan)]

    def vocabulary_sizes(self) -> dict[str, Optional[int]]:
        """Categorical feature → how many tokens its vocabulary keeps (None: all)."""
        return {f.name: f.vocab_size for f in self.features if f.type == "string"}

    def row_rules(self) -> RowRules:
        """How a raw source row becomes a stored record."""
        return RowRules(tuple(f.to_rule() for f in self.features), self.label.to_rule(), self.source.na_values)

    def sequence_columns(self) -> list[str]:
        """The source columns that hold sequences (in a long-format table, their steps'
        values: one column per channel)."""
        return [c for f in self.features if f.type == "sequence" for c in (f.columns or (f.column or f.name,))]

    def split_key(self) -> tuple[str, ...]:
        """The columns the hash split keys on: ``split.key``; by default, for a
        long-format table, its id (every step of a sequence goes to one split)."""
        if not self.split.key and self.source.sequence is not None:
            return (self.source.sequence.id,)
        return tuple(self.split.key)

    def source_columns(self) -> list[str]:
        """Every source column the job reads (features, label, split key and split column;
        a long-format table's id and order)."""
        columns = self.row_rules().columns()
        table = self.source.sequence
        extra = [*self.split_key(), *([self.split.column] if self.split.column else []),
                 *((table.id, table.order) if table is not None else ())]
        return columns + [k for k in dict.fromkeys(extra) if k not in columns]

    def to_json(self) -> dict[str, Any]:
        """The config as plain JSON data, as the dataset's manifest records it."""
        return self.model_dump(mode="json")


# --------------------------------------------------------------------------- loading


def config_from_dict(data: Any) -> JobConfig:
    """Build a `JobConfig` from plain data (what `yaml.safe_load` returns), bounded in
    size and depth as a YAML file is (`config_yaml.check_size`).

    Raises:
        ConfigError: naming the key path and the fix.
    """
    check_size(data)
    return _validate(JobConfig, data)


def load_config(path_or_mapping: Union[str, os.PathLike, Mapping[str, Any]]) -> JobConfig:
    """Load and check a job config: a YAML file, or a mapping such as `yaml.safe_load` returns.

    Raises:
        ConfigError: naming the file (when read from one), the key path, and the fix.
    """
    if isinstance(path_or_mapping, Mapping):
        return config_from_dict(path_or_mapping)
    path = os.fspath(path_or_mapping)
    data = read_yaml(path)
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a job config, for editors (e.g. the YAML language server)."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **JobConfig.model_json_schema(),
            "title": "tfstream job config"}
