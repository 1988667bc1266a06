"""The schema: what a stored record holds, and the parse spec derived from it.

The schema is the part of the manifest that both sides agree on. The write side
(`transforms.codecs.encode_example`, called from Beam) and the read side
(`tf.io.parse_example` with `Schema.parse_spec()`, called from tf.data) are both derived
from it, so they cannot drift apart.

Storage layout of one record (a `tf.train.Example`):

* numeric feature ``x`` of shape ``()`` or ``(k,)``: one packed FloatList / Int64List
  under key ``x`` (``k`` values).
* categorical feature ``c``: one BytesList with one UTF-8 value under key ``c``.
* sequence feature ``s`` with ``dim`` values per step: all ``T * dim`` values packed in
  one list under key ``s``, and ``T`` under key ``s_length``.
* the label under its own name: an int64 class index (binary, multiclass) or a float
  (regression).

Why flat values plus a length in a `tf.train.Example`, not a `tf.train.SequenceExample`:
a SequenceExample stores one `Feature` proto per time step, so encoding and parsing cost
grows with the number of steps; a packed list is one proto per sequence and parses with
one `RaggedFeature` into a `[batch, (time), dim]` ragged tensor, vectorized over the
whole batch. Plain Examples are also what `tf.data.TFRecordDataset` + `tf.io.parse_example`
and tensorflow-datasets read without special cases. The stored length lets a reader
filter or bucket by length without decoding the values.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from tfstream.transforms.label_scaling import TRANSFORMS

KINDS = ("numeric", "categorical", "sequence")
DTYPES = ("float32", "int64", "string")
# The `tf.train.Feature` list that holds each dtype.
_LISTS = {"float32": "float_list", "int64": "int64_list", "string": "bytes_list"}
TASKS = ("binary", "multiclass", "regression")

LENGTH_SUFFIX = "_length"


def length_key(name: str) -> str:
    """The key under which a sequence feature's number of steps is stored.

    Example:
        >>> length_key("mfcc")
        'mfcc_length'
    """
    return name + LENGTH_SUFFIX


@dataclasses.dataclass(frozen=True)
class Feature:
    """One stored input feature.

    Attributes:
        name: the key in the record and the name of the model input.
        kind: ``numeric``, ``categorical`` or ``sequence``.
        dtype: ``float32``, ``int64`` or ``string`` (categorical features are strings).
        shape: ``()`` for a scalar, ``(k,)`` for a fixed vector; for a sequence, the
            shape of one step, ``(dim,)``.
    """

    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"feature {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"feature {self.name!r}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if self.kind == "categorical" and (self.dtype != "string" or self.shape != ()):
            raise ValueError(
                f"feature {self.name!r}: a categorical feature is a scalar string; "
                f"got dtype {self.dtype!r} shape {self.shape}"
            )
        if self.kind == "numeric" and self.dtype == "string":
            raise ValueError(f"feature {self.name!r}: a numeric feature needs dtype float32 or int64")
        if self.kind == "sequence" and len(self.shape) != 1:
            raise ValueError(
                f"feature {self.name!r}: a sequence feature needs the shape of one step, (dim,); "
                f"got {self.shape}"
            )
        if len(self.shape) > 1 or any(d < 1 for d in self.shape):
            raise ValueError(
                f"feature {self.name!r}: shape must be () or (k,) with k >= 1; got {self.shape}"
            )

    @property
    def size(self) -> int:
        """Number of values per example (per step, for a sequence)."""
        return self.shape[0] if self.shape else 1

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Feature":
        return cls(data["name"], data["kind"], data["dtype"], tuple(data.get("shape", ())))


@dataclasses.dataclass(frozen=True)
class Label:
    """The training target.

    Attributes:
        name: the key in the record.
        task: ``binary`` (int64 0/1), ``multiclass`` (int64 index) or ``regression``
            (float32).
        classes: the class names, in index order (binary and multiclass).
        transform: regression only: ``none`` or ``log1p``, what the model is trained on
            (`transforms.label_scaling`). Part of the schema because preprocessing depends on it:
            validation rejects labels outside its domain, and the statistics hold the
            moments of the transformed label.
    """

    name: str
    task: str
    classes: tuple[str, ...] = ()
    transform: str = "none"

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"label {self.name!r}: task must be one of {TASKS}, got {self.task!r}")
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        if self.task == "binary" and len(self.classes) != 2:
            raise ValueError(f"label {self.name!r}: a binary label has 2 classes, got {self.classes}")
        if self.task == "multiclass" and len(self.classes) < 2:
            raise ValueError(f"label {self.name!r}: a multiclass label needs >= 2 classes")
        if self.task == "regression" and self.classes:
            raise ValueError(f"label {self.name!r}: a regression label has no classes")
        if self.transform not in TRANSFORMS:
            raise ValueError(f"label {self.name!r}: transform must be one of {TRANSFORMS}, got {self.transform!r}")
        if self.transform != "none" and self.task != "regression":
            raise ValueError(f"label {self.name!r}: only a regression label is transformed")

    @property
    def dtype(self) -> str:
        return "float32" if self.task == "regression" else "int64"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.name, "task": self.task, "dtype": self.dtype, "classes": list(self.classes)}
        if self.transform != "none":  # (absent otherwise: a manifest without one reads the same as before)
            out["transform"] = self.transform
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Label":
        return cls(data["name"], data["task"], tuple(data.get("classes", ())), data.get("transform") or "none")


@dataclasses.dataclass(frozen=True)
class Schema:
    """The features and the label of a dataset.

    Example:
        >>> s = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
        >>> sorted(s.parse_spec())
        ['x', 'y']
    """

    features: tuple[Feature, ...]
    label: Label

    def __post_init__(self):
        object.__setattr__(self, "features", tuple(self.features))
        if not self.features:
            raise ValueError("a schema needs at least one feature")
        seen: set[str] = set()
        for key in self.record_keys():
            if key in seen:
                raise ValueError(
                    f"the record key {key!r} is used twice (feature names, their "
                    f"'{LENGTH_SUFFIX}' keys and the label name must be distinct)"
                )
            seen.add(key)

    def record_keys(self) -> list[str]:
        """Every key a stored record holds."""
        keys = []
        for f in self.features:
            keys.append(f.name)
            if f.kind == "sequence":
                keys.append(length_key(f.name))
        keys.append(self.label.name)
        return keys

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"no feature {name!r}; the schema has {[f.name for f in self.features]}")

    @property
    def sequence_features(self) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind == "sequence")

    def parse_spec(self) -> dict[str, Any]:
        """The feature spec for `tf.io.parse_example` on a batch of serialized records
        (`parse_spec_from_json` of `encoding`'s ``parse_spec``).

        Sequence features parse to `tf.RaggedTensor` of shape ``[batch, (time), dim]``;
        everything else to dense tensors of shape ``[batch, *shape]``.
        """
        return parse_spec_from_json(self.encoding()["parse_spec"])

    def encoding(self) -> dict[str, Any]:
        """How a record stores this schema, as JSON data (the manifest's ``encoding``):
        every key of a record with its list type, dtype and shape per record, and the
        parse spec, for readers that are not tfstream (`parse_spec_from_json` turns it
        into TensorFlow's).

        Example:
            >>> s = Schema((Feature("s", "sequence", "float32", (13,)),), Label("y", "binary", ("a", "b")))
            >>> [(k["key"], k["list"], k["shape"]) for k in s.encoding()["keys"]]
            [('s', 'float_list', [None, 13]), ('s_length', 'int64_list', []), ('y', 'int64_list', [])]
            >>> s.encoding()["parse_spec"]["s"]
            {'type': 'RaggedFeature', 'dtype': 'float32', 'value_key': 's', 'partitions': [{'uniform_row_length': 13}]}
        """
        keys: list[dict[str, Any]] = []
        spec: dict[str, Any] = {}
        for f in self.features:
            if f.kind == "sequence":
                keys.append({"key": f.name, "list": _LISTS[f.dtype], "dtype": f.dtype, "shape": [None, f.size],
                             "values": f"{length_key(f.name)} * {f.size}, step after step",
                             "what": f"feature {f.name!r}: a sequence of steps of {f.size} values"})
                keys.append({"key": length_key(f.name), "list": "int64_list", "dtype": "int64", "shape": [],
                             "values": 1, "what": f"the number of steps of {f.name!r}"})
                spec[f.name] = {"type": "RaggedFeature", "dtype": f.dtype, "value_key": f.name,
                                "partitions": [{"uniform_row_length": f.size}]}
                spec[length_key(f.name)] = {"type": "FixedLenFeature", "shape": [], "dtype": "int64"}
            else:
                keys.append({"key": f.name, "list": _LISTS[f.dtype], "dtype": f.dtype, "shape": list(f.shape),
                             "values": f.size, "what": f"feature {f.name!r} ({f.kind})"
                             + (": UTF-8 text" if f.dtype == "string" else "")})
                spec[f.name] = {"type": "FixedLenFeature", "shape": list(f.shape), "dtype": f.dtype}
        label = self.label
        what = "the class index into the manifest's schema.label.classes" if label.num_classes else "the target"
        keys.append({"key": label.name, "list": _LISTS[label.dtype], "dtype": label.dtype, "shape": [], "values": 1,
                     "what": f"label {label.name!r} ({label.task}): {what}"})
        spec[label.name] = {"type": "FixedLenFeature", "shape": [], "dtype": label.dtype}
        return {"record": "tf.train.Example", "keys": keys, "parse_spec": spec}

    def to_json(self) -> dict[str, Any]:
        return {"features": [f.to_json() for f in self.features], "label": self.label.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Schema":
        return cls(tuple(Feature.from_json(f) for f in data["features"]), Label.from_json(data["label"]))


def parse_spec_from_json(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A parse spec given as data (`Schema.encoding`'s ``parse_spec``, as the manifest
    holds it) → the spec for `tf.io.parse_example`.

    Example:
        >>> s = Schema((Feature("x", "numeric", "float32", (2,)),), Label("y", "regression"))
        >>> parse_spec_from_json(s.encoding()["parse_spec"])["x"]
        FixedLenFeature(shape=[2], dtype=tf.float32, default_value=None)
    """
    import tensorflow as tf  # imported here: schema is also used where TF is not needed

    out: dict[str, Any] = {}
    for key, entry in spec.items():
        dtype = tf.dtypes.as_dtype(entry["dtype"])
        if entry["type"] == "RaggedFeature":
            partitions = tuple(tf.io.RaggedFeature.UniformRowLength(p["uniform_row_length"])
                               for p in entry["partitions"])
            out[key] = tf.io.RaggedFeature(dtype=dtype, value_key=entry["value_key"], partitions=partitions)
        else:
            out[key] = tf.io.FixedLenFeature(list(entry["shape"]), dtype)
    return out


def format_parse_spec(schema: Schema) -> str:
    """Python source for the parse spec, for readers that do not use tfstream.

    Example:
        >>> s = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
        >>> print(format_parse_spec(s))
        {
            "x": tf.io.FixedLenFeature([], tf.float32),
            "y": tf.io.FixedLenFeature([], tf.float32),
        }
    """
    lines = ["{"]
    for key, entry in schema.encoding()["parse_spec"].items():
        if entry["type"] == "RaggedFeature":
            partitions = ", ".join(f"tf.io.RaggedFeature.UniformRowLength({p['uniform_row_length']})"
                                   for p in entry["partitions"])
            lines.append(f'    "{key}": tf.io.RaggedFeature(tf.{entry["dtype"]}, value_key="{entry["value_key"]}", '
                         f"partitions=[{partitions}]),")
        else:
            lines.append(f'    "{key}": tf.io.FixedLenFeature({entry["shape"]}, tf.{entry["dtype"]}),')
    lines.append("}")
    return "\n".join(lines)
