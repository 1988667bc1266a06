"""TFDS sources: a tensorflow-datasets dataset already prepared on disk.

Its "files" are the TFRecord shards that its ``dataset_info.json`` lists
(`tfds_shard_paths`), one worker reads one shard, and its columns are the dataset's
top-level features, decoded with TFDS's NumPy parser (no TensorFlow): numbers as Python
numbers, strings (``Text``) as str, a ``ClassLabel`` as its class index, a fixed ``(k,)``
tensor as an array, and a ``(None, dim)`` (or ``(None,)``) tensor as a sequence
``(steps, dim)``.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any, Iterator, Sequence

import numpy as np

from tfstream.pipelines import fs
from tfstream.pipelines.write.sources import SourceError, open_file

_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
_DATASET_INFO = "dataset_info.json"


def tfds_data_dir(source) -> str:
    """The directory a tfds source is prepared in: ``source.data_dir``, else TFDS's
    default (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``); a local one made absolute."""
    data_dir = source.data_dir
    if data_dir is None:
        from tensorflow_datasets.core import constants

        data_dir = constants.DATA_DIR
    return data_dir if fs.is_remote(data_dir) else os.path.abspath(os.path.expanduser(data_dir))


def _tfds_builder_dir(source) -> str:
    """``<data_dir>/<name>[/<config>]/<version>`` of a tfds source; the newest prepared
    version when the config names none.

    Raises:
        FileNotFoundError: no such prepared dataset or version, saying where it looked.
    """
    name, config, version = source.tfds_parts()
    data_dir = tfds_data_dir(source)
    root = fs.join(data_dir, name, *([config] if config else []))
    # A prepared version is a folder with a dataset_info.json (TFDS prepares into an
    # "incomplete.*" folder and renames it when done).
    found = {}
    for info in fs.glob(fs.join(root, "*", _DATASET_INFO)):
        folder = info[: -len(_DATASET_INFO) - 1]
        v = folder.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        if _VERSION_RE.fullmatch(v):
            found[tuple(int(x) for x in v.split("."))] = folder
    prepare = (f"prepare it first (`tfds build {name} --data_dir={data_dir}`, or the builder's "
               f"download_and_prepare(data_dir=...)), or fix `source.data_dir`")
    if not found:
        raise FileNotFoundError(f"source.tfds {source.tfds!r}: no prepared dataset in {root} "
                                f"(no <version>/{_DATASET_INFO}); {prepare}")
    if version is None:
        return found[max(found)]
    key = tuple(int(x) for x in version.split("."))
    if key not in found:
        have = [".".join(map(str, v)) for v in sorted(found)]
        raise FileNotFoundError(f"source.tfds {source.tfds!r}: version {version} is not prepared in {root}; "
                                f"the prepared versions are {have}: name one of them, or {prepare}")
    return found[key]


@functools.lru_cache(maxsize=16)
def _tfds_builder(builder_dir: str):
    """The read-only TFDS builder of a prepared dataset (cached: one per worker process)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder_from_directory(builder_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises several types for a bad directory
        raise SourceError(f"{builder_dir}: cannot load the TFDS dataset: {e}") from e


def tfds_shard_paths(source) -> list[str]:
    """The TFRecord shard files of a tfds source, in split order then shard order.

    Args:
        source: a `SourceConfig` with ``tfds`` set.

    Returns:
        Absolute paths of the shards of ``source.tfds_split`` (default: every split).

    Raises:
        FileNotFoundError: the dataset (or the version) is not prepared in ``data_dir``.
        SourceError: no such split, no examples, or shards not stored as TFRecord.

    Example:
        >>> from tfstream.pipelines.config import SourceConfig
        >>> tfds_shard_paths(SourceConfig(tfds="mnist", data_dir="/nonexistent"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: source.tfds 'mnist': no prepared dataset in /nonexistent/mnist ...
    """
    builder_dir = _tfds_builder_dir(source)
    info = _tfds_builder(builder_dir).info
    file_format = getattr(info.file_format, "value", info.file_format)
    if str(file_format) != "tfrecord":
        raise SourceError(f"{builder_dir}: the TFDS dataset's shards are {file_format}; tfstream reads TFRecord "
                          f"shards: prepare it with file_format='tfrecord' (TFDS's default)")
    splits = list(info.splits.keys())
    if source.tfds_split is not None and source.tfds_split not in splits:
        raise SourceError(f"source.tfds_split {source.tfds_split!r}: the TFDS dataset {builder_dir} has the "
                          f"splits {splits}; name one of them, or remove `tfds_split` to read them all")
    wanted = [source.tfds_split] if source.tfds_split else splits
    paths = [os.fspath(fi.filename) for split in wanted for fi in info.splits[split].file_instructions]
    if not paths:
        raise SourceError(f"{builder_dir}: the TFDS dataset has no examples in split(s) {wanted}")
    return paths


def tfds_num_examples(source) -> int:
    """The examples of a tfds source's split(s), as its ``dataset_info.json`` counts them."""
    info = _tfds_builder(_tfds_builder_dir(source)).info
    wanted = [source.tfds_split] if source.tfds_split else list(info.splits.keys())
    return sum(int(info.splits[split].num_examples) for split in wanted)


def _tfds_builder_dir_of(shard: str) -> str:
    """The dataset folder of a shard: the nearest folder above it with a dataset_info.json
    (a TFDS template may put shards in sub-folders, as tfstream's own datasets do)."""
    folder = shard.replace("\\", "/").rsplit("/", 1)[0]
    for _ in range(4):
        if fs.exists(fs.join(folder, _DATASET_INFO)):
            return folder
        folder = folder.rsplit("/", 1)[0]
    raise SourceError(f"{shard}: no {_DATASET_INFO} in the folders above it; is it a shard of a prepared TFDS dataset?")


def check_tfds(paths: Sequence[str], source, columns: Sequence[str], sequence_columns: Sequence[str]) -> None:
    from tensorflow_datasets.core.features import FeaturesDict, Tensor

    builder_dir = _tfds_builder_dir(source)
    features = _tfds_builder(builder_dir).info.features
    present = list(features.keys())
    missing = [c for c in columns if c not in present]
    if missing:
        raise SourceError(
            f"{builder_dir}: missing required column(s) {sorted(missing)}; the TFDS dataset has the features "
            f"{present}. Fix the column names in the config (features[].column, label.column, split.key)"
        )
    bad = []
    for c in columns:
        f = features[c]
        shape = tuple(f.shape) if isinstance(f, Tensor) else None
        if shape is None or isinstance(f, FeaturesDict):
            bad.append(f"{c!r} is a {type(f).__name__} (tfstream reads tensor features: numbers, Text, ClassLabel)")
        elif c in sequence_columns:
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] is None):
                bad.append(f"{c!r} has shape {shape}; a sequence column needs (None, dim) or (None,)")
        elif len(shape) > 1 or None in shape:
            bad.append(f"{c!r} has shape {shape}; a feature column needs () or a fixed (k,), and a (None, dim) "
                       f"tensor is read as a feature of type sequence")
    if bad:
        raise SourceError(f"{builder_dir}: TFDS feature(s) tfstream cannot read: {'; '.join(bad)}")
    for path in paths:
        if not fs.exists(path):
            raise SourceError(f"{path}: a shard listed in {builder_dir}/{_DATASET_INFO} is missing; "
                              f"prepare the TFDS dataset again")


def _tfrecords(path: str) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file, checksums verified, without TensorFlow."""
    from tfstream.pipelines.shards import RecordError, read_records

    with open_file(path) as f:
        try:
            yield from read_records(f, path)
        except RecordError as e:
            raise SourceError(f"{e}; prepare the TFDS dataset again") from None


def _tfds_value(value: Any, path: str, row: int, column: str) -> Any:
    """A decoded TFDS value as tfstream's row rules take it: str for text, Python
    numbers for scalars (bools as 0/1), NumPy arrays for vectors and sequences."""
    try:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "SO":
                return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.reshape(-1).tolist()]
            return value.astype(np.int64) if value.dtype == np.bool_ else value
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: row {row}: column {column!r}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if isinstance(value, np.generic):
        value = value.item()
    return int(value) if isinstance(value, bool) else value


def tfds_chunks(path: str, columns: Sequence[str], chunk_rows: int) -> Iterator[tuple[str, int, dict[str, Any]]]:
    from tensorflow_datasets.core.features import FeaturesDict

    features = _tfds_builder(_tfds_builder_dir_of(path)).info.features
    # Parse only the columns the job reads: other features (images, ...) are skipped.
    wanted = FeaturesDict({c: features[c] for c in columns})
    chunk: dict[str, list] = {c: [] for c in columns}
    first = row = 1
    for record in _tfrecords(path):
        try:
            example = wanted.deserialize_example_np(record)
        except Exception as e:  # noqa: BLE001 - the TFDS parser raises several types
            raise SourceError(f"{path}: row {row}: cannot parse the record as the dataset's features: {e}") from e
        for c in columns:
            chunk[c].append(_tfds_value(example[c], path, row, c))
        row += 1
        if row - first == chunk_rows:
            yield path, first, chunk
            chunk, first = {c: [] for c in columns}, row
    if row > first:
        yield path, first, chunk
