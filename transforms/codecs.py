"""Encode a validated row into a serialized `tf.train.Example`, and parse batches back.

`encode_example` is what the Beam pipeline maps over rows; `parse_batch` is what the
tf.data reader maps over batches of serialized records. Both follow the storage layout
documented in `transforms.schema`.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tfstream.transforms.example_proto import Example
from tfstream.transforms.schema import Schema, length_key


def _fill(feature, dtype: str, values) -> None:
    if dtype == "float32":
        feature.float_list.value.extend(values)
    elif dtype == "int64":
        feature.int64_list.value.extend(values)
    else:
        feature.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else v for v in values)


def _flat(value: Any) -> list:
    if isinstance(value, np.ndarray):
        return value.reshape(-1).tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def encode_example(row: Mapping[str, Any], schema: Schema) -> bytes:
    """Serialize one validated row (see `transforms.validation`) as a `tf.train.Example`.

    Args:
        row: maps each feature name and the label name to a Python or NumPy value:
            a scalar, a length-k vector, or for a sequence an array of shape (T, dim).
        schema: the dataset schema.

    Returns:
        The serialized Example.

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> s = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
        >>> len(encode_example({"x": 1.5, "y": 2.0}, s)) > 0
        True
    """
    example = Example()
    fmap = example.features.feature
    for f in schema.features:
        value = row[f.name]
        values = _flat(value)
        if f.kind == "sequence":
            if len(values) % f.size:
                raise ValueError(
                    f"feature {f.name!r}: {len(values)} values is not a whole number of "
                    f"steps of {f.size}"
                )
            fmap[length_key(f.name)].int64_list.value.append(len(values) // f.size)
        elif len(values) != f.size:
            raise ValueError(f"feature {f.name!r}: expected {f.size} value(s), got {len(values)}")
        _fill(fmap[f.name], f.dtype, values)
    _fill(fmap[schema.label.name], schema.label.dtype, [row[schema.label.name]])
    # Deterministic: map entries sorted by key. Otherwise the bytes of the same row can
    # differ between processes (map order follows the process's hash seed), and so would
    # the write-time shuffle order that is keyed by the record's hash.
    return example.SerializeToString(deterministic=True)


def decode_example(serialized: bytes, schema: Schema) -> dict[str, Any]:
    """Parse one serialized record into NumPy values, without TensorFlow.

    The inverse of `encode_example`; used by tests and `tfstream inspect`.
    """
    example = Example.FromString(serialized)
    fmap = example.features.feature

    def values(key: str, dtype: str):
        kind = {"float32": "float_list", "int64": "int64_list", "string": "bytes_list"}[dtype]
        return list(getattr(fmap[key], kind).value)

    out: dict[str, Any] = {}
    for f in schema.features:
        vals = values(f.name, f.dtype)
        if f.dtype == "string":
            vals = [v.decode("utf-8") for v in vals]
        if f.kind == "sequence":
            out[f.name] = np.asarray(vals, dtype=f.dtype if f.dtype != "string" else object).reshape(-1, f.size)
            out[length_key(f.name)] = values(length_key(f.name), "int64")[0]
        elif f.shape:
            out[f.name] = np.asarray(vals, dtype=f.dtype if f.dtype != "string" else object)
        else:
            out[f.name] = vals[0]
    out[schema.label.name] = values(schema.label.name, schema.label.dtype)[0]
    return out


def parse_batch(serialized, schema: Schema):
    """Parse a batch of serialized records, vectorized, into ``(features, label)``.

    Sequence features come back as `tf.RaggedTensor` ``[batch, (time), dim]`` plus an
    int64 ``<name>_length`` tensor; densify them with `pipelines.read.stages.parse_and_pad`.

    Args:
        serialized: a string tensor of shape ``[batch]``.
        schema: the dataset schema.

    Returns:
        ``(features, label)``: a dict of tensors keyed by feature name, and the label.
    """
    import tensorflow as tf

    parsed = tf.io.parse_example(serialized, schema.parse_spec())
    label = parsed.pop(schema.label.name)
    return parsed, label
