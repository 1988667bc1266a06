"""Reference Keras 3 models, built from a dataset's schema and training-split statistics.

Preprocessing lives inside the model: `Normalization` with the full-pass mean and
variance, `StringLookup` with the training vocabulary and its out-of-vocabulary buckets,
and, for features whose config imputes missing or non-finite values, the same imputation
(the training mean). The saved and exported model therefore takes raw feature values and
applies exactly the training-time preprocessing (no training/serving skew).

* `build_dense`: tabular data; numeric features normalized, categorical features
  looked up and embedded, then a stack of Dense layers.
* `build_lstm`: variable-length sequences, right-padded; a mask from the
  ``<name>_length`` input hides the padding (right padding keeps the fused cuDNN
  kernel usable on a GPU); options for long sequences (`training.sequence_layers`):
  per-sequence standardization, a strided Conv1D front-end, a GRU cell, and pooling
  over the real steps.

On a Keras backend other than TensorFlow (``KERAS_BACKEND=jax``), `StringLookup` cannot
be part of the model: `build_model` then builds it to take categorical features as
``int64`` ids, looked up in the reader with the same layer (`pipelines.read.lookups`),
and the serving export puts the lookup back (`export`): it takes raw strings on every
backend.

The head follows the label: sigmoid for binary, softmax for multiclass, linear for
regression. A regression model predicts the label as it learns it (`read` gives it so:
``label.transform``, then standardized); `LabelInverse`, which the serving export ends
with, turns that back into the label's units.
"""

from __future__ import annotations

import logging
from typing import Mapping, Optional

import keras
from keras import layers, ops

from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import CategoricalStatistics, FeatureStatistics, Manifest, NumericStatistics
from tfstream.pipelines.read.lookups import lookup_size, string_lookup
from tfstream.transforms.label_scaling import LabelScaling
from tfstream.training.sequence_layers import LengthMask, MaskedPooling, MaskedStandardize, conv_front_end
from tfstream.transforms.schema import Feature, Label, Schema, length_key

_log = logging.getLogger(__name__)
# LengthMask lives in `sequence_layers` with the other masked layers; it is imported from here too.
__all__ = ["FillNonFinite", "LabelInverse", "LengthMask", "build_dense", "build_lstm", "build_model",
           "compile_for", "lookups_in_model"]


def lookups_in_model() -> bool:
    """Whether the reference models look categorical strings up themselves: only on the
    TensorFlow backend (elsewhere the reader does: `pipelines.read.lookups`)."""
    return keras.backend.backend() == "tensorflow"

@keras.saving.register_keras_serializable(package="tfstream")
class FillNonFinite(layers.Layer):
    """Replaces NaN and ±inf by 0. After `Normalization` 0 is the training mean, so this
    imputes the mean: what preprocessing did to the stored records, done again at
    serving time on raw inputs."""

    def call(self, x):
        return ops.where(ops.isfinite(x), x, ops.zeros_like(x))


@keras.saving.register_keras_serializable(package="tfstream")
class LabelInverse(layers.Layer):
    """Model units → the label's units: ``T⁻¹(z × std + mean)`` (`LabelScaling.invert`).

    The serving export ends with it (`export.serving_model`), so that a regression model
    trained on a transformed, standardized label predicts in the label's own units.
    """

    def __init__(self, transform: str = "none", mean: float = 0.0, std: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.scaling = LabelScaling(transform, float(mean), float(std))

    def call(self, z):
        y = z * self.scaling.std + self.scaling.mean
        return ops.expm1(y) if self.scaling.transform == "log1p" else y

    def get_config(self):
        return {**super().get_config(), **self.scaling.to_json()}


def _input(feature: Feature) -> keras.KerasTensor:
    if feature.kind == "sequence":
        return keras.Input(shape=(None, feature.size), dtype=feature.dtype, name=feature.name)
    return keras.Input(shape=feature.shape, dtype=feature.dtype, name=feature.name)


def _normalize(x, feature: Feature, stats: NumericStatistics):
    mean, var = list(stats.mean) if stats.is_vector else [stats.mean], \
        list(stats.variance) if stats.is_vector else [stats.variance]
    if not feature.shape:  # a scalar: [batch] → [batch, 1]
        x = layers.Reshape((1,), name=f"{feature.name}_as_column")(x)
    x = layers.Normalization(mean=mean, variance=var, name=f"{feature.name}_normalized")(x)
    return _imputed(x, feature, stats)


def _imputed(x, feature: Feature, stats: FeatureStatistics):
    if getattr(stats, "impute", None) == "mean" and feature.dtype == "float32":
        return FillNonFinite(name=f"{feature.name}_imputed")(x)
    return x


def _embed(x, feature: Feature, stats: CategoricalStatistics, embedding_dim: int, lookup: bool):
    vocabulary = stats.tokens
    unique = stats.num_unique if stats.num_unique is not None else len(vocabulary)
    if unique > len(vocabulary):
        _log.info("feature %r: the %d most frequent of %d tokens have their own id; the other %d share %d "
                  "out-of-vocabulary bucket(s) (features[].vocab_size)", feature.name, len(vocabulary), unique,
                  unique - len(vocabulary), stats.oov_buckets or 1)
    lookup_layer = string_lookup(feature.name, stats)  # also when not applied: it checks the vocabulary
    ids = lookup_layer(x) if lookup else x
    size = lookup_size(stats)
    return layers.Embedding(size, min(embedding_dim, size), name=f"{feature.name}_embedding")(ids)


def _head(x, label: Label):
    if label.task == "binary":
        return layers.Dense(1, activation="sigmoid", name=label.name)(x)
    if label.task == "multiclass":
        return layers.Dense(label.num_classes, activation="softmax", name=label.name)(x)
    return layers.Dense(1, name=label.name)(x)


def compile_for(model: keras.Model, label: Label, learning_rate: float) -> keras.Model:
    """Compile with the loss and metrics of the label's task."""
    if label.task == "binary":
        loss = keras.losses.BinaryCrossentropy()
        metrics = [keras.metrics.BinaryAccuracy(name="accuracy"), keras.metrics.AUC(name="auc")]
    elif label.task == "multiclass":
        loss = keras.losses.SparseCategoricalCrossentropy()
        metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
    else:
        # In model units (standardized): the evaluation reports RMSE, MAE and R² in the
        # label's units (`training.evaluation`).
        loss = keras.losses.MeanSquaredError()
        metrics = []
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=metrics)
    return model


def build_dense(schema: Schema, statistics: Mapping[str, FeatureStatistics], *, hidden_units=(64, 32),
                dropout: float = 0.0, embedding_dim: int = 8, lookups: bool = True) -> keras.Model:
    """A Dense network over numeric and categorical features.

    Args:
        schema: the dataset schema (no sequence features).
        statistics: feature name → its statistics over the training split
            (``manifest.split("train").features``).
        lookups: categorical inputs are strings, looked up in the model (TensorFlow
            only); False: they are ``int64`` ids (`pipelines.read.lookups`).

    Example:
        >>> m = load_manifest(dataset_dir)
        >>> model = build_dense(m.schema, m.split("train").features, hidden_units=(8,))
        >>> model.output_shape
        (None, 1)
    """
    if schema.sequence_features:
        raise ValueError("build_dense: the schema has sequence features; use build_lstm")
    inputs, parts = {}, []
    for feature in schema.features:
        ids = feature.kind == "categorical" and not lookups
        x = inputs[feature.name] = (keras.Input(shape=feature.shape, dtype="int64", name=feature.name) if ids
                                    else _input(feature))
        fstats = statistics[feature.name]
        if feature.kind == "categorical":
            parts.append(_embed(x, feature, fstats, embedding_dim, lookups))
        else:
            parts.append(_normalize(x, feature, fstats))
    x = layers.Concatenate(name="features")(parts) if len(parts) > 1 else parts[0]
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _head(x, schema.label), name="tfstream_dense")


def build_lstm(schema: Schema, statistics: Mapping[str, FeatureStatistics], *, lstm_units=(64,),
               hidden_units=(64,), dropout: float = 0.0, bidirectional: bool = False, cell: str = "gru",
               conv_layers: int = 2, conv_filters: int = 64, conv_kernel_size: int = 9, conv_strides: int = 4,
               standardize: str = "none", pooling: str = "mean_max") -> keras.Model:
    """A recurrent network over one variable-length sequence feature, masked by its length.

    Inputs: the padded sequence ``[batch, time, dim]`` and ``<name>_length`` ``[batch]``.
    The steps are normalized with the training split's statistics; then, in order, and
    each respecting the lengths (`training.sequence_layers`): ``standardize=
    "per_sequence"`` z-scores each sequence and channel over its own steps;
    ``conv_layers`` strided ``Conv1D`` layers shorten the sequence ``conv_strides`` times
    each (lengths become ``ceil(length / conv_strides)``); the recurrent layers
    (``cell``: ``lstm`` or ``gru``) run over the real steps; ``pooling`` reads the last
    layer's final state (``last``) or pools its outputs over the real steps (``mean``,
    ``max``, ``mean_max``); then the Dense layers and the head. The defaults (those of
    ``model:``) were chosen on long signals (`benchmarks.long_signals`; README: Long
    signals): a 2-layer Conv1D front-end (kernel 9, strides 4), a GRU, and mean_max pooling.

    Args:
        schema: the dataset schema (exactly one feature, a sequence).
        statistics: feature name → its statistics over the training split.
    """
    sequences = schema.sequence_features
    if len(sequences) != 1 or len(schema.features) != 1:
        raise ValueError(
            f"build_lstm: expects exactly one feature, of kind sequence; got {[f.name for f in schema.features]}"
        )
    feature = sequences[0]
    if feature.dtype != "float32":
        raise ValueError(f"build_lstm: feature {feature.name!r} holds {feature.dtype}; expected float32 steps")
    seq = _input(feature)
    lengths = keras.Input(shape=(), dtype="int64", name=length_key(feature.name))
    inputs = {feature.name: seq, length_key(feature.name): lengths}
    mask = LengthMask(name="mask")(seq, lengths)
    fstats = statistics[feature.name]
    x = layers.Normalization(mean=list(fstats.mean), variance=list(fstats.variance),
                             name=f"{feature.name}_normalized")(seq)
    x = _imputed(x, feature, fstats)
    if standardize == "per_sequence":
        x = MaskedStandardize(name=f"{feature.name}_standardized")(x, mask)
    if conv_layers:
        x, lengths = conv_front_end(x, lengths, num_layers=conv_layers, filters=conv_filters,
                                    kernel_size=conv_kernel_size, strides=conv_strides)
        mask = LengthMask(name="conv_mask")(x, lengths)
    rnn_layer = {"lstm": layers.LSTM, "gru": layers.GRU}[cell]
    for i, units in enumerate(lstm_units):
        last = i == len(lstm_units) - 1
        rnn = rnn_layer(units, return_sequences=not (last and pooling == "last"), name=f"{cell}_{i}")
        if bidirectional:
            rnn = layers.Bidirectional(rnn, name=f"bidirectional_{i}")
        x = rnn(x, mask=mask)
        if dropout:
            x = layers.Dropout(dropout, name=f"{cell}_dropout_{i}")(x)
    if pooling != "last":
        x = MaskedPooling(pooling, name=f"{pooling}_pooling")(x, mask)
    for i, units in enumerate(hidden_units):
        x = layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _head(x, schema.label), name="tfstream_lstm")


def build_model(manifest: Manifest, config: JobConfig, *, split: Optional[str] = None,
                lookups: Optional[bool] = None) -> keras.Model:
    """The reference model of a job, built from a dataset's statistics and compiled.

    The config's ``model:`` section names the model (``dense`` for tabular data,
    ``lstm`` for a sequence) and its layers; the normalization, vocabularies and
    imputation come from ``split`` (default: ``train.train_split``) of the manifest; the
    loss and metrics follow the label's task, with ``train.learning_rate``.

    Args:
        manifest: the dataset's manifest (`load_manifest`).
        config: the job config (`load_config`).
        split: the split whose statistics the model is built from.
        lookups: whether categorical inputs are strings looked up in the model, or ids
            looked up by the reader; default: `lookups_in_model` (the Keras backend's).

    Example:
        >>> model = build_model(load_manifest(dataset_dir), load_config("configs/flights_dense.yaml"))
        >>> model.name, model.output_shape
        ('tfstream_dense', (None, 1))
    """
    m = config.require_model()
    statistics = manifest.split(split or config.train.train_split).features
    if m.type == "dense":
        model = build_dense(manifest.schema, statistics, hidden_units=m.hidden_units, dropout=m.dropout,
                            embedding_dim=m.embedding_dim,
                            lookups=lookups_in_model() if lookups is None else lookups)
    else:
        model = build_lstm(manifest.schema, statistics, lstm_units=m.lstm_units, hidden_units=m.hidden_units,
                           dropout=m.dropout, bidirectional=m.bidirectional, cell=m.cell,
                           conv_layers=m.conv_layers, conv_filters=m.conv_filters,
                           conv_kernel_size=m.conv_kernel_size, conv_strides=m.conv_strides,
                           standardize=m.standardize, pooling=m.pooling)
    return compile_for(model, manifest.label, config.train.learning_rate)
