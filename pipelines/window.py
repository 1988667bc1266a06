"""A training window: several datasets ("spans") read as one.

Scheduled retraining trains on the last few spans, each a dataset directory that
`preprocess` wrote with one config (``datasets/<name>/span=<span>/``). `window_manifest`
gives one `Manifest` over them, in memory: nothing is written, copied or re-read.

* **Its shards** are every span's, in the order given, named relative to the spans'
  common parent directory (the manifest's ``root``), so `Manifest.shard_paths`, `read`,
  the memory planner, `verify` and `train` treat the window as one dataset; the shards'
  sizes and checksums are the spans' own.
* **Its statistics** are the spans' merged from their manifests
  (`window_statistics.merge_split_statistics`): counts, moments, length histograms and
  vocabularies exactly; a numeric feature's deciles and histogram are left out (they
  do not merge).
* **Held-out splits** (``held_out``) come from one dataset as they are, not merged:
  ``held_out={"eval": newest_span}`` scores a model on the newest span's eval split
  only, the data nearest to what it will serve.
* **The spans it covers** are recorded under ``window.datasets`` (`Manifest.window`):
  each one's directory, snapshot id and `Manifest.digest`. Training pins every one of
  their snapshots (`snapshots.pins`), and the window's own `Manifest.digest` (schema,
  shard checksums and counts) changes whenever any span's records do.

The rest is the newest span's (the last given): name, schema, encoding, compression,
options (its config) and versions. ``source`` adds up the spans' rows read, written,
dropped and rejected (the ``datasets``', not those of a held-out dataset outside them),
with their quarantine files; there is no ``snapshot`` block.

Example:
    >>> window = window_manifest([dataset_dir])   # one span: the same records
    >>> window.num_examples("train") == load_manifest(dataset_dir).num_examples("train")
    True
    >>> [d["snapshot"] for d in window.window] == [load_manifest(dataset_dir).snapshot["id"]]
    True
    >>> window_manifest([dataset_dir, sequence_dataset_dir])
    Traceback (most recent call last):
    ...
    tfstream.pipelines.manifest.ManifestError: ...: features ['mfcc'], not ['month', ... (as in ...); a window \
reads datasets written with one config: re-run `tfstream preprocess` on this dataset's source with the config ...
"""

from __future__ import annotations

import collections
import copy
import datetime
import hashlib
import json
import os
import posixpath
from typing import Any, Mapping, Optional, Sequence, Union

from tfstream.pipelines import fs
from tfstream.pipelines.manifest import FORMAT_VERSION, Manifest, ManifestError, load_manifest
from tfstream.pipelines.window_statistics import VocabularyMismatch, merge_split_statistics

Dataset = Union[str, Manifest]
_ONE_CONFIG = ("a window reads datasets written with one config: re-run `tfstream preprocess` on this dataset's "
               "source with the config of the others")


def window_manifest(datasets: Sequence[Dataset], *, held_out: Optional[Mapping[str, Dataset]] = None) -> Manifest:
    """One virtual `Manifest` over several datasets (see the module's docstring).

    Args:
        datasets: the dataset directories or their loaded `Manifest`s, oldest first
            (the newest, last, gives the name, options and the statistics' policies).
            A window may be one of them: its spans are listed in its place.
        held_out: split name → the one dataset whose split of that name the window
            uses as it is (not merged); any dataset written with the same config, one
            of ``datasets`` or not. ``{"eval": newest}``: the window's eval split is the
            newest span's alone.

    Returns:
        The window's `Manifest`; its ``root`` is the datasets' common parent directory.

    Raises:
        ManifestError: a dataset cannot be loaded, is listed twice, or differs from
            the first in its schema, compression or split names (named, with what
            differs); ``held_out`` names a split the datasets do not have; the datasets
            are not all local or all in one bucket.
        TypeError: ``datasets`` is one dataset, not a list of them.
    """
    if isinstance(datasets, (str, Manifest)):
        raise TypeError(f"window_manifest: expected a list of datasets, got one ({_name(datasets)!r}); "
                        f"write window_manifest([{_name(datasets)!r}])")
    if not datasets:
        raise ManifestError("window_manifest: no dataset given; list the dataset directories of the window's spans")
    manifests = [_load(d) for d in datasets]
    by_root: dict[str, Manifest] = {}
    for m in manifests:
        if _root(m) in by_root:
            raise ManifestError(f"{m.root}: listed twice in the window; list each dataset once")
        by_root[_root(m)] = m
    # A held-out dataset that is also a span is the same loaded manifest (the same snapshot).
    held = {split: d if isinstance(d, Manifest) else by_root.get(_root_of(d)) or _load(d)
            for split, d in (held_out or {}).items()}
    first, last = manifests[0], manifests[-1]
    for m in [*manifests[1:], *held.values()]:
        _check_compatible(first, m)
    for split in held:
        if split not in first.split_names:
            raise ManifestError(f"held_out: no split {split!r} in the window's datasets; they have "
                                f"{first.split_names}")
    read: list[Manifest] = []  # every dataset whose files the window names, once
    for m in [*manifests, *held.values()]:
        if not any(m is o for o in read):
            read.append(m)
    root, prefixes = _common_root([_root(m) for m in read])
    configs = {f["name"]: f for f in last.config.get("features", ()) if isinstance(f, Mapping) and "name" in f}
    splits = {}
    for name in last.split_names:
        if name in held:
            splits[name] = _rebased_split(held[name], name, prefixes[_root(held[name])])
        else:
            splits[name] = _merged_split(manifests, name, prefixes, configs)
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "name": last.name,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "compression": last.compression,
        "schema": copy.deepcopy(last.data["schema"]),
        "encoding": copy.deepcopy(last.encoding),
        "splits": splits,
        "source": _source(manifests, prefixes),
        **{key: copy.deepcopy(last.data[key]) for key in ("options", "versions") if key in last.data},
        "window": {"datasets": _entries(read)},
    }
    return Manifest(data, root)


def _name(dataset: Dataset) -> str:
    return dataset.root if isinstance(dataset, Manifest) else str(dataset)


def _load(dataset: Dataset) -> Manifest:
    return dataset if isinstance(dataset, Manifest) else load_manifest(str(dataset))


def _root_of(dataset: Dataset) -> str:
    path = _name(dataset)
    return path.rstrip("/") if fs.is_remote(path) else os.path.abspath(path)


def _root(manifest: Manifest) -> str:
    return _root_of(manifest.root)


def _check_compatible(first: Manifest, other: Manifest) -> None:
    """The same schema, compression and splits as the first dataset, or a ManifestError
    naming ``other`` and what differs."""
    a, b = first.data["schema"], other.data["schema"]
    if a != b:
        what = _schema_difference(a, b)
    elif other.compression != first.compression:
        what = f"compression {other.compression!r}, not {first.compression!r}"
    elif other.split_names != first.split_names:
        what = f"splits {other.split_names}, not {first.split_names}"
    else:
        return
    raise ManifestError(f"{other.root}: {what} (as in {first.root}); {_ONE_CONFIG}")


def _schema_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """What in schema ``b`` differs from ``a``, in a few words."""
    names_a, names_b = [f["name"] for f in a["features"]], [f["name"] for f in b["features"]]
    if names_a != names_b:
        return f"features {_cut(names_b)}, not {_cut(names_a)}"
    for fa, fb in zip(a["features"], b["features"]):
        if fa != fb:
            return f"feature {fa['name']!r} is {_cut(_brief(fb))}, not {_cut(_brief(fa))}"
    return f"label {_cut(_brief(b['label']))}, not {_cut(_brief(a['label']))}"


def _brief(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in entry.items() if k != "name" and v not in ([], None)}


def _cut(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _common_root(roots: Sequence[str]) -> tuple[str, dict[str, str]]:
    """The datasets' common parent directory, and each dataset's path relative to it."""
    remote = [fs.is_remote(r) for r in roots]
    if not any(remote):
        common = os.path.commonpath(roots)
        return common, {r: os.path.relpath(r, common).replace(os.sep, "/") for r in roots}
    schemes = {r.split("://", 1)[0] if is_remote else "" for r, is_remote in zip(roots, remote)}
    rests = [r.split("://", 1)[-1] for r in roots]
    common = posixpath.commonpath(rests) if len(schemes) == 1 else ""
    if not common:  # local and remote, two file systems, or two buckets
        raise ManifestError(f"a window's datasets are all local, or all in one bucket; got {_cut(list(roots))}: copy "
                            f"them to one place")
    return f"{schemes.pop()}://{common}", {r: posixpath.relpath(rest, common) for r, rest in zip(roots, rests)}


def _rebased(prefix: str, file: str) -> str:
    """A path relative to a dataset → relative to the window's root."""
    return posixpath.normpath(posixpath.join(prefix, file))


def _rebased_split(manifest: Manifest, name: str, prefix: str) -> dict[str, Any]:
    split = copy.deepcopy(manifest.data["splits"][name])
    for shard in split.get("shards", ()):
        shard["file"] = _rebased(prefix, shard["file"])
    return split


def _merged_split(manifests: Sequence[Manifest], name: str, prefixes: Mapping[str, str],
                  configs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    parts = [m.data["splits"][name] for m in manifests]
    shards = [{**shard, "file": _rebased(prefixes[_root(m)], shard["file"])}
              for m, part in zip(manifests, parts) for shard in part.get("shards", ())]
    try:
        statistics = merge_split_statistics([p.get("statistics") or {} for p in parts], manifests[-1].data["schema"],
                                            configs)
    except VocabularyMismatch as e:
        raise ManifestError(f"{manifests[e.index].root}: split {name!r}: {e}; {_ONE_CONFIG}") from None
    last = parts[-1]
    return {
        "fraction": last.get("fraction"),
        **({"given_split": last["given_split"]} if "given_split" in last else {}),
        "num_examples": sum(s["records"] for s in shards),
        "num_bytes": sum(s["bytes"] for s in shards),
        "num_shards": len(shards),
        "shards": shards,
        "statistics": statistics,
    }


def _source(manifests: Sequence[Manifest], prefixes: Mapping[str, str]) -> dict[str, Any]:
    """The spans' ``source`` blocks added up: rows, quarantine counts and files, and one
    fingerprint over theirs."""
    sources = [m.data.get("source") or {} for m in manifests]
    fingerprints = [s.get("fingerprint") or {} for s in sources]
    out: dict[str, Any] = {
        "fingerprint": {
            "files": [f for fp in fingerprints for f in fp.get("files", ())],
            "sha256": hashlib.sha256(json.dumps([fp.get("sha256", "") for fp in fingerprints]).encode()).hexdigest(),
        }
    }
    for key in ("rows_read", "rows_written", "rows_dropped", "rows_rejected"):
        out[key] = sum(int(s.get(key) or 0) for s in sources)
    for key in ("dropped", "rejected"):
        counts: collections.Counter = collections.Counter()
        for s in sources:
            counts.update(s.get(key) or {})
        out[key] = dict(sorted(counts.items()))
    examples: dict[str, str] = {}
    for s in sources:  # the first rejected row of each kind, oldest span first
        for key, message in (s.get("rejected_examples") or {}).items():
            examples.setdefault(key, message)
    out["rejected_examples"] = examples
    out["quarantine"] = [_rebased(prefixes[_root(m)], path)
                         for m, s in zip(manifests, sources) for path in s.get("quarantine", ())]
    return out


def _entries(manifests: Sequence[Manifest]) -> list[dict[str, Any]]:
    """``window.datasets``: every dataset the window reads (a window's own, in its place)."""
    out: list[dict[str, Any]] = []
    for m in manifests:
        own = [dict(d) for d in m.window] if m.window is not None else [
            {"dir": _root(m), "snapshot": str(m.snapshot["id"]) if m.snapshot else None, "digest": m.digest}]
        out += [d for d in own if d not in out]
    return out
