"""tensorflow-datasets metadata for a tfstream dataset directory.

`write_tfds_metadata` writes ``dataset_info.json`` and ``features.json`` (and
``<label>.labels.txt`` for a class label) next to ``manifest.json``, so that the same
shards load with tensorflow-datasets, without copying or converting them::

    builder = tfds.builder_from_directory("runs/digits/dataset")
    ds = builder.as_dataset(split="train")      # or as_supervised=True: (features, label)

The JSON is written directly (no TensorFlow import: it runs at the end of preprocessing);
each split's ``filepathTemplate`` names tfstream's own shard files
(``{SPLIT}/<name>-{SHARD_X_OF_Y}.tfrecord``) and its ``shardLengths`` come from the
manifest's per-shard record counts.

What works (tested with tensorflow-datasets 4.9):

* numeric scalars and fixed vectors ``[k]``: `tfds.features.Tensor` of that shape;
* categorical strings: `tfds.features.Text` (decoded as ``tf.string``);
* sequences: `tfds.features.Tensor` of shape ``(None, dim)`` float32, which TFDS parses
  from tfstream's packed FloatList of ``steps * dim`` values into ``[steps, dim]``; the
  ``<name>_length`` key is an int64 scalar feature beside it;
* the label: `tfds.features.ClassLabel` with the class names (binary, multiclass), or a
  float32 scalar (regression). Class names that a ``labels.txt`` file cannot hold
  (empty, with surrounding spaces or a line break, repeated) give a ClassLabel with the
  number of classes only;
* ``supervised_keys`` is ``({feature: feature, ...}, label)``, so ``as_supervised=True``
  yields what `tfstream.pipelines.read` yields (unbatched, sequences not padded).

What does not work: gzip-compressed shards (``output.compression: gzip``).
tensorflow-datasets opens TFRecord shards without a compression option, so it cannot
read them; for such a dataset nothing is written (a warning says to use
``output.compression: none``), and TFDS metadata left by an earlier uncompressed run is
removed, so that it cannot describe shards that are gone.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any, Mapping, Optional

from tfstream.pipelines import fs
from tfstream.pipelines.shards import shard_suffix
from tfstream.pipelines.snapshots import SNAPSHOTS_DIR, snapshot_info
from tfstream.transforms.schema import Schema, format_parse_spec, length_key

_log = logging.getLogger(__name__)

DATASET_INFO_NAME = "dataset_info.json"
FEATURES_NAME = "features.json"
TFDS_VERSION = "1.0.0"  # a tfstream dataset has no version of its own; TFDS needs one

_TENSOR = "tensorflow_datasets.core.features.tensor_feature.Tensor"
_TEXT = "tensorflow_datasets.core.features.text_feature.Text"
_CLASS_LABEL = "tensorflow_datasets.core.features.class_label_feature.ClassLabel"
_FEATURES_DICT = "tensorflow_datasets.core.features.features_dict.FeaturesDict"


def _tensor(dtype: str, shape) -> dict[str, Any]:
    dims = {"dimensions": [str(d) for d in shape]} if len(shape) else {}
    return {"pythonClassName": _TENSOR, "tensor": {"dtype": dtype, "encoding": "none", "shape": dims}}


def _names_file_can_hold(names) -> bool:
    """Whether TFDS reads the names back as written: it strips each line, drops empty
    lines, and maps names to indices (so they must be distinct)."""
    return (len(set(names)) == len(names)
            and all(n and n == n.strip() and "\n" not in n and "\r" not in n for n in names))


def _features_json(schema: Schema) -> tuple[dict[str, Any], Optional[str]]:
    """``features.json`` content, and the text of ``<label>.labels.txt`` (or None)."""
    features: dict[str, Any] = {}
    for f in schema.features:
        if f.kind == "categorical":
            features[f.name] = {"pythonClassName": _TEXT, "text": {}}
        elif f.kind == "sequence":
            # TFDS parses a (None, d) tensor with FixedLenSequenceFeature((d,)): tfstream's
            # packed list of steps * d values becomes [steps, d].
            features[f.name] = _tensor(f.dtype, (-1, *f.shape))
            features[length_key(f.name)] = _tensor("int64", ())
        else:
            features[f.name] = _tensor(f.dtype, f.shape)
    label = schema.label
    names_text = None
    if label.task == "regression":
        features[label.name] = _tensor("float32", ())
    else:
        features[label.name] = {"pythonClassName": _CLASS_LABEL,
                                "classLabel": {"numClasses": str(label.num_classes)}}
        if _names_file_can_hold(label.classes):
            names_text = "\n".join(label.classes) + "\n"
        else:
            _log.warning("TFDS metadata: the class names of label %r %s cannot be stored in a TFDS labels file "
                         "(empty, padded with spaces, multi-line or repeated); the ClassLabel has %d unnamed "
                         "classes", label.name, list(label.classes), label.num_classes)
    return {"featuresDict": {"features": features}, "pythonClassName": _FEATURES_DICT}, names_text


def _tfds_name(name: str) -> str:
    """A TFDS dataset name (``[a-zA-Z]\\w*``) from a tfstream one (which may hold '.' and '-')."""
    out = re.sub(r"\W", "_", name)
    return out if out[:1].isalpha() else f"tfstream_{out}"


def _split_infos(manifest_data: Mapping[str, Any], prefix: str = "") -> Optional[list[dict[str, Any]]]:
    """The SplitInfo JSON of each split, or None when a split's shard files do not follow
    the one naming a template can express (``<prefix><split>/<name>-i-of-N.tfrecord``)."""
    name, suffix = manifest_data["name"], shard_suffix(manifest_data["compression"])
    infos = []
    for split, data in manifest_data["splits"].items():
        shards = list(data["shards"])
        n = len(shards)
        expected = [f"{prefix}{split}/{name}-{i:05d}-of-{n:05d}{suffix}" for i in range(n)]
        if [s["file"].replace("\\", "/") for s in shards] != expected:
            _log.warning("TFDS metadata: split %r has shards %s, not %s; not writing TFDS metadata",
                         split, [s["file"] for s in shards], expected)
            return None
        infos.append({
            "name": split,
            # The literal dataset name, not {DATASET}: a tfstream name may hold '.' and '-'.
            "filepathTemplate": f"{prefix}{{SPLIT}}/{name}-{{SHARD_X_OF_Y}}{suffix}",
            "numBytes": str(sum(int(s["bytes"]) for s in shards)),
            "shardLengths": [str(int(s["records"])) for s in shards],
        })
    return infos


def _remove_stale(dataset_dir: str, file_names=(DATASET_INFO_NAME, FEATURES_NAME)) -> list[str]:
    """Delete TFDS metadata of an earlier run; returns the paths deleted."""
    removed = []
    for file_name in file_names:
        path = fs.join(dataset_dir, file_name)
        if fs.exists(path):
            fs.remove(path)
            removed.append(path)
    return removed


def write_tfds_metadata(dataset_dir: str, manifest_data: Mapping[str, Any]) -> list[str]:
    """Write tensorflow-datasets metadata for a tfstream dataset directory.

    `publish.publish` calls it twice: into the new snapshot's folder before publishing,
    with the run's manifest (shard paths relative to that folder), and at the dataset's
    root just after, with the published manifest (paths ``snapshots/<id>/<split>/...``):
    each describes exactly the shards the manifest names.
    ``dataset_info.json`` is written last, so TFDS never sees a half-written set.
    Gzip-compressed datasets cannot be read by TFDS: for them nothing is written (and
    TFDS metadata of an earlier run is removed), with a warning.

    Args:
        dataset_dir: the dataset directory (local or remote, ``gs://...``).
        manifest_data: the manifest's JSON content (`Manifest.data`).

    Returns:
        The paths written, ``dataset_info.json`` last; ``[]`` when TFDS cannot read the
        dataset.

    Example:
        >>> m = load_manifest(sequence_dataset_dir)  # uncompressed shards
        >>> [p.rsplit("/", 1)[1] for p in write_tfds_metadata(sequence_dataset_dir, m.data)]
        ['features.json', 'digit.labels.txt', 'dataset_info.json']
        >>> import tensorflow_datasets as tfds
        >>> tfds.builder_from_directory(sequence_dataset_dir).info.splits["train"].num_examples == m.num_examples(
        ...     "train")
        True
    """
    if manifest_data["compression"] != "none":
        removed = _remove_stale(dataset_dir)
        _log.warning(
            "TFDS metadata not written for %s: its shards are %s-compressed, which tensorflow-datasets cannot "
            "read; set `output.compression: none` to load the dataset with tfds.builder_from_directory%s",
            dataset_dir, manifest_data["compression"],
            f" (removed the stale {', '.join(removed)})" if removed else "")
        return []
    info = snapshot_info(manifest_data)  # published: the files are in the snapshot's folder
    splits = _split_infos(manifest_data, f"{SNAPSHOTS_DIR}/{info['id']}/" if info else "")
    if splits is None:
        _remove_stale(dataset_dir)
        return []
    schema = Schema.from_json(manifest_data["schema"])
    features, names_text = _features_json(schema)
    label = schema.label.name
    inputs = {key: {"featureKey": key} for key in schema.record_keys() if key != label}
    info = {
        "name": _tfds_name(manifest_data["name"]),
        "description": (
            f"tfstream dataset {manifest_data['name']!r}"
            + (f", written {manifest_data['created_at']}" if manifest_data.get("created_at") else "")
            + ". Records are tf.train.Example; parse spec:\n" + format_parse_spec(schema)
        ),
        "version": TFDS_VERSION,
        "fileFormat": "tfrecord",
        "splits": splits,
        "supervisedKeys": {"tuple": {"items": [{"dict": {"dict": inputs}}, {"featureKey": label}]}},
    }
    written = []

    def write(file_name: str, text: str) -> None:
        path = fs.join(dataset_dir, file_name)
        fs.write_atomic(path, text.encode("utf-8"))
        written.append(path)

    write(FEATURES_NAME, json.dumps(features, indent=1))
    if names_text is not None:
        write(f"{label}.labels.txt", names_text)
    else:  # TFDS would take an earlier run's names file as this label's names
        _remove_stale(dataset_dir, (f"{label}.labels.txt",))
    write(DATASET_INFO_NAME, json.dumps(info, indent=1))
    return written
