"""The shape of ``manifest.json``, checked when it is loaded: each key of the right JSON
type, and each split's count equal to its shards' records.

A manifest edited by hand, or written by another tool, would otherwise fail deep inside
the reader or the report as a ``KeyError``, ``AttributeError`` or ``TypeError``. The
checks here read the JSON only (no file is opened), and the first problem is named by
its key path (``splits.train.shards[2].records``). `manifest.Manifest` and
`manifest.load_manifest` raise it as a `ManifestError`.

Example:
    >>> schema = {"features": [{"name": "x", "kind": "numeric", "dtype": "float32"}],
    ...           "label": {"name": "y", "task": "regression"}}
    >>> shape_problem({"schema": schema, "splits": {"train": {"num_examples": "10"}}}, written=False)
    "splits.train.num_examples: expected an integer, got a string: '10'"
    >>> shape_problem({"splits": {}}, written=False)
    "no 'schema' key (the dataset's features and label)"
"""

from __future__ import annotations

import posixpath
from typing import Any, Mapping, Optional

# JSON type → how a message names it.
_NAMES = {dict: "a mapping (JSON object)", list: "a list (JSON array)", str: "a string", int: "an integer",
          float: "a number", bool: "true or false"}
_STAT_INTS = ("count", "missing", "non_finite", "num_unique", "oov_buckets", "steps", "truncated",
              "quantiles_rank_error")
_STAT_NUMBERS = ("mean", "variance", "min", "max")


class _Bad(Exception):
    """The first problem found, as the message for `ManifestError`."""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for t, name in _NAMES.items() if _is(value, t)), type(value).__name__)


def _echo(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):  # JSON true/false are not numbers
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _get(data: Mapping[str, Any], key: str, path: str, kind: type, *, required: bool = False,
         what: str = "") -> Any:
    """``data[key]``, checked to be of ``kind`` (None when absent or null and not required)."""
    where = f"{path}.{key}" if path else key
    if key not in data or (data[key] is None and not required):
        if required:
            raise _Bad(f"{path + ': ' if path else ''}no {key!r} key{f' ({what})' if what else ''}")
        return None
    value = data[key]
    if not _is(value, kind):
        raise _Bad(f"{where}: expected {_NAMES[kind]}, got {_kind(value)}: {_echo(value)}")
    if kind is int and value < 0:
        raise _Bad(f"{where}: expected a count (>= 0), got {value}")
    return value


def _items(data: Mapping[str, Any], key: str, path: str, kind: type, **kwargs: Any) -> list[tuple[str, Any]]:
    """The entries of a list or mapping at ``data[key]``, each checked to be of ``kind``,
    with their key paths."""
    container = _get(data, key, path, list if kwargs.pop("is_list", False) else dict, **kwargs)
    where = f"{path}.{key}" if path else key
    pairs = [(f"{where}[{i}]", v) for i, v in enumerate(container)] if isinstance(container, list) \
        else [(f"{where}.{k}", v) for k, v in (container or {}).items()]
    for p, v in pairs:
        if not _is(v, kind):
            raise _Bad(f"{p}: expected {_NAMES[kind]}, got {_kind(v)}: {_echo(v)}")
    return pairs


def _number_or_list(data: Mapping[str, Any], key: str, path: str) -> None:
    value = data.get(key)
    if value is None or _is(value, float):
        return
    if isinstance(value, list) and all(v is None or _is(v, float) for v in value):
        return
    raise _Bad(f"{path}.{key}: expected a number or a list of numbers, got {_echo(value)}")


def _statistics(data: Mapping[str, Any], path: str) -> None:
    for key in _STAT_INTS:
        _get(data, key, path, int)
    for key in _STAT_NUMBERS:
        _number_or_list(data, key, path)
    _get(data, "quantiles", path, list)
    _get(data, "kind", path, str)
    _get(data, "vocabulary_exact", path, bool)  # a training window's (pipelines.window)
    hist = _get(data, "histogram", path, dict)
    if hist is not None and "edges" in hist:  # a numeric histogram (a length's maps length → count)
        _items(hist, "edges", f"{path}.histogram", float, is_list=True, required=True)
        _items(hist, "counts", f"{path}.histogram", int, is_list=True, required=True)
        _get(hist, "count_error", f"{path}.histogram", int)
    length = _get(data, "length", path, dict)
    if length is not None:
        for key in ("count", "min", "max"):
            _get(length, key, f"{path}.length", int)
        _get(length, "mean", f"{path}.length", float)
        _items(length, "histogram", f"{path}.length", int)
    for p, pair in _items(data, "vocabulary", path, list, is_list=True):
        if len(pair) != 2 or not isinstance(pair[0], str) or not _is(pair[1], int):
            raise _Bad(f"{p}: expected a [token, count] pair, got {_echo(pair)}")


def inside(file: str) -> bool:
    """Whether a path a manifest names stays inside the dataset directory (relative, no
    scheme, no ``..``): readers and garbage collection touch nothing else."""
    return not (posixpath.isabs(file) or "://" in file or ".." in file.replace("\\", "/").split("/"))


def _shard(data: Mapping[str, Any], path: str) -> int:
    file = _get(data, "file", path, str, required=True, what="the shard's path in the dataset")
    if not inside(file):
        raise _Bad(f"{path}.file: expected a path inside the dataset directory, got {_echo(file)}")
    for key in ("bytes", "record_bytes", "max_record_bytes"):
        _get(data, key, path, int, required=key == "bytes")
    _get(data, "sha256", path, str, required=True)
    return _get(data, "records", path, int, required=True)


def _split(data: Mapping[str, Any], path: str, written: bool) -> None:
    _get(data, "fraction", path, float)
    for key in ("num_bytes", "num_shards"):
        _get(data, key, path, int)
    num_examples = _get(data, "num_examples", path, int, required=written)
    shards = _items(data, "shards", path, dict, is_list=True, required=written)
    records = sum(_shard(shard, p) for p, shard in shards)
    # Hand-made manifests (statistics only, in tests and tools) may list no shards.
    if num_examples is not None and (shards or written) and num_examples != records:
        raise _Bad(f"{path}.num_examples: {num_examples}, but its {len(shards)} shard(s) hold {records} records "
                   f"(the sum of their 'records')")
    sizing = _get(data, "shard_sizing", path, dict)
    if sizing is not None:  # since shard counts follow the data; older manifests have none
        _shard_sizing(sizing, f"{path}.shard_sizing")
    stats = _get(data, "statistics", path, dict) or {}
    for p, feature in _items(stats, "features", f"{path}.statistics", dict):
        _statistics(feature, p)
    label = _get(stats, "label", f"{path}.statistics", dict)
    if label is not None:
        if "class_counts" in label:
            _items(label, "class_counts", f"{path}.statistics.label", int)
        else:
            _statistics(label, f"{path}.statistics.label")
            transformed = _get(label, "transformed", f"{path}.statistics.label", dict)
            if transformed is not None:
                _statistics(transformed, f"{path}.statistics.label.transformed")


SHARD_SIZING_SOURCES = ("config", "estimate", "default")


def _shard_sizing(data: Mapping[str, Any], path: str) -> None:
    how = _get(data, "source", path, str, required=True, what=" or ".join(SHARD_SIZING_SOURCES))
    if how not in SHARD_SIZING_SOURCES:
        raise _Bad(f"{path}.source: expected one of {list(SHARD_SIZING_SOURCES)}, got {_echo(how)}")
    for key in ("target_shard_mb", "estimated_rows", "estimated_bytes"):
        _get(data, key, path, int)
    _get(data, "rows_exact", path, bool)


def _schema(data: Mapping[str, Any]) -> None:
    for p, feature in _items(data, "features", "schema", dict, is_list=True, required=True):
        for key in ("name", "kind", "dtype"):
            _get(feature, key, p, str, required=True)
        _items(feature, "shape", p, int, is_list=True)
    label = _get(data, "label", "schema", dict, required=True)
    for key in ("name", "task"):
        _get(label, key, "schema.label", str, required=True)
    _get(label, "dtype", "schema.label", str)
    _get(label, "transform", "schema.label", str)
    _items(label, "classes", "schema.label", str, is_list=True)


def _source(data: Mapping[str, Any], written: bool) -> None:
    for key in ("rows_read", "rows_written", "rows_dropped", "rows_rejected"):
        _get(data, key, "source", int, required=written and key != "rows_rejected")
    for key in ("dropped", "rejected"):
        _items(data, key, "source", int)
    _items(data, "rejected_examples", "source", str)
    for p, file in _items(data, "quarantine", "source", str, is_list=True):
        if not inside(file):
            raise _Bad(f"{p}: expected a path inside the dataset directory, got {_echo(file)}")
    fingerprint = _get(data, "fingerprint", "source", dict)
    if fingerprint is not None:
        _items(fingerprint, "files", "source.fingerprint", dict, is_list=True)
        _get(fingerprint, "sha256", "source.fingerprint", str)


def _check(data: Any, written: bool) -> None:
    if not isinstance(data, Mapping):
        raise _Bad(f"expected a mapping (JSON object) at the top level, got {_echo(data)}")
    if written:
        _get(data, "name", "", str, required=True, what="the dataset's name")
        compression = _get(data, "compression", "", str, required=True, what="none or gzip")
        if compression not in ("none", "gzip"):
            raise _Bad(f"compression: expected 'none' or 'gzip', got {_echo(compression)}")
    for key in ("name", "created_at"):
        _get(data, key, "", str)
    _schema(_get(data, "schema", "", dict, required=True, what="the dataset's features and label"))
    splits = _items(data, "splits", "", dict, required=True, what="each split's shards and statistics")
    if written and not splits:
        raise _Bad("splits: no split; a written dataset has at least one")
    for p, split in splits:
        _split(split, p, written)
    source = _get(data, "source", "", dict, required=written, what="the rows read and written")
    if source is not None:
        _source(source, written)
    options = _get(data, "options", "", dict)
    if options is not None:
        _get(options, "config", "options", dict)
    drift = _get(data, "drift", "", dict)
    if drift is not None:
        for p, finding in _items(drift, "findings", "drift", dict, is_list=True):
            for key in ("feature", "kind"):
                _get(finding, key, p, str, required=True)
    _get(data, "snapshot", "", dict)  # format 3; its content is the publisher's
    window = _get(data, "window", "", dict)  # a training window's datasets (pipelines.window)
    if window is not None:
        for p, dataset in _items(window, "datasets", "window", dict, is_list=True, required=True):
            for key in ("dir", "digest"):
                _get(dataset, key, p, str, required=True)
            _get(dataset, "snapshot", p, str)
    encoding = _get(data, "encoding", "", dict)  # informative (readers use the schema); newer manifests
    if encoding is not None:
        for p, key in _items(encoding, "keys", "encoding", dict, is_list=True):
            _get(key, "key", p, str, required=True)
        _items(encoding, "parse_spec", "encoding", dict)


def shape_problem(data: Any, *, written: bool = True) -> Optional[str]:
    """The first problem with a manifest's shape, by key path, or None.

    Args:
        data: the manifest's JSON content.
        written: hold it to what a preprocessing run writes (name, compression, source,
            and every split's count and shards); without it (manifests built by hand for
            statistics), only the keys present are checked, besides schema and splits.
    """
    try:
        _check(data, written)
    except _Bad as e:
        return str(e)
    return None
