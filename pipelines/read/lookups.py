"""Categorical strings → integer ids: the one `StringLookup` the model and the reader share.

On TensorFlow the reference models look categorical features up themselves (a Keras
`StringLookup` layer inside the model, so the export takes raw strings). Keras's
`StringLookup` cannot be part of a model compiled on another backend (JAX, PyTorch);
it still runs in a tf.data pipeline on any backend. There the lookup moves into the
reader: `categorical_ids` maps each categorical feature's strings to the ids the model's
own lookup would give (the same layer, from the same statistics: `string_lookup`), and
the model takes ``int64`` ids for those inputs. The serving export looks the strings up
again (`training.export`), so it still takes raw features on every backend.

Example:
    >>> from tfstream.pipelines.read.reader import read
    >>> manifest = load_manifest(dataset_dir)
    >>> carriers = manifest.split("train").features["carrier"]
    >>> ds = read(manifest, "eval", batch_size=4, shuffle=False, categorical_ids="train")
    >>> features, _ = next(iter(ds))
    >>> features["carrier"].dtype.name, bool(max(features["carrier"]) < lookup_size(carriers))
    ('int64', True)
    >>> lookup = string_lookup("carrier", carriers)
    >>> int(lookup(carriers.tokens[0])) == (carriers.oov_buckets or 1)
    True
"""

from __future__ import annotations

from typing import Callable, Mapping

import tensorflow as tf

from tfstream.pipelines.manifest import CategoricalStatistics, FeatureStatistics
from tfstream.transforms.schema import Schema

Stage = Callable[[tf.data.Dataset], tf.data.Dataset]


def lookup_size(stats: CategoricalStatistics) -> int:
    """The number of ids `string_lookup` gives: the vocabulary and its out-of-vocabulary buckets."""
    return len(stats.tokens) + (stats.oov_buckets or 1)


def string_lookup(name: str, stats: CategoricalStatistics):
    """The Keras `StringLookup` of feature ``name``: the training vocabulary (most frequent
    first) gets ids ``oov_buckets ..``; other tokens hash into ids ``0 .. oov_buckets - 1``
    (at least one bucket). The layer is named ``<name>_lookup``.

    Raises:
        ValueError: the statistics hold no vocabulary (not a training split's).
    """
    from keras import layers

    if not stats.tokens:
        raise ValueError(f"feature {name!r}: the training split has no vocabulary to build a lookup from")
    return layers.StringLookup(vocabulary=stats.tokens, num_oov_indices=stats.oov_buckets or 1,
                               name=f"{name}_lookup")


def categorical_ids(schema: Schema, statistics: Mapping[str, FeatureStatistics], *,
                    num_parallel_calls: int = tf.data.AUTOTUNE, deterministic=None) -> Stage:
    """Batches of ``(features, label)`` → the same, each categorical feature's strings
    replaced by their ``int64`` ids (`string_lookup` with ``statistics``, the split the
    model is built from). A schema without categorical features: the batches unchanged.
    """
    lookups = {f.name: string_lookup(f.name, statistics[f.name]) for f in schema.features
               if f.kind == "categorical"}

    def look_up(features, label):
        features = dict(features)
        for name, lookup in lookups.items():
            features[name] = lookup(features[name])
        return features, label

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if not lookups:
            return ds
        return ds.map(look_up, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage
