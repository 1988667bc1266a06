"""Manifest assembly, shared by both writers: everything a run computed → the content of
its ``manifest.json`` (format `manifest.FORMAT_VERSION`).

`manifest_settings` takes what comes from the config (name, schema, splits, options,
the policies a model must repeat); `manifest_json` adds what the run measured (shards,
statistics, vocabularies, quarantine counts, rows read).
"""

from __future__ import annotations

import copy
import datetime
import importlib.metadata
from typing import Any, Optional

from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.config_retrain import dataset_fingerprint
from tfstream.pipelines.manifest import FORMAT_VERSION, encoding_json
from tfstream.pipelines.write.record_paths import PathRecorder, path_recorder


def manifest_settings(config: JobConfig, fingerprint: dict[str, Any], writer: dict[str, Any],
                      recorder: Optional[PathRecorder] = None) -> dict[str, Any]:
    """The arguments of `manifest_json` that come from the config, not from the data.

    Args:
        config: the job config.
        fingerprint: the source fingerprint.
        writer: what wrote the dataset and how, recorded under ``options`` next to the
            config: ``{"beam": {options}}`` for `preprocess`.
        recorder: how the recorded config names paths (``source.record_paths``);
            default: `path_recorder` of the config's own patterns.
    """
    recorder = recorder if recorder is not None else path_recorder(config.source, ())
    plan = config.split_plan()
    return {
        "name": config.name,
        "schema_json": config.schema().to_json(),
        "compression": config.output.compression,
        "fractions": {name: plan.nominal_fraction(name) for name in plan.names},
        "given": {name: plan.given_split(name) for name in plan.names} if plan.given else {},
        "fingerprint": fingerprint,
        "options": {"config": recorder.config(config.to_json()), "config_sha256": dataset_fingerprint(config), **writer},
        "versions": _versions(),
        "train_split": config.train.train_split,
        "feature_policies": _feature_policies(config),
    }


def manifest_json(*, name, schema_json, compression, fractions, given, fingerprint, options, versions, shards,
                  stats, vocabularies, train_split, feature_policies, quarantined, examples, quarantine_files,
                  dataset_dir, rows_read, shard_sizing=None) -> dict[str, Any]:
    """The manifest of a run, from everything it computed (see `manifest_settings` for
    the arguments that come from the config).

    Each split records its ``fraction``: the hash split's, a carved split's fraction of
    its given split, null for a split given by the source; with given splits, also
    ``given_split``, the given split it comes from.

    Args:
        shards: ``(split, shard description)`` pairs (`sharding.describe_shard`).
        stats: ``(split, statistics)`` pairs (`DatasetStats.extract_output`).
        vocabularies: ``(feature, {"num_unique", "vocabulary"})`` pairs of the
            training split.
        quarantined: ``((action, quarantine_key), count)`` pairs.
        examples: ``(key, (file, row, message))`` pairs: the first rejected row per key.
        quarantine_files: the quarantine files' paths.
        dataset_dir: the folder the run writes into (paths are made relative to it).
        rows_read: the number of rows read.
        shard_sizing: split → how its shard count was chosen
            (`shard_plan.shard_sizing`), recorded as the split's ``shard_sizing``.
    """
    splits = {}
    for split in fractions:
        split_shards = sorted((d for s, d in shards if s == split), key=lambda d: d["file"])
        split_stats = copy.deepcopy(next(st for s, st in stats if s == split))  # side inputs are read-only
        if split == train_split:
            for feature, policy in feature_policies.items():
                split_stats["features"][feature].update(policy)
            for feature, vocab in vocabularies:
                split_stats["features"][feature].update(vocab)
        splits[split] = {
            "fraction": fractions[split],
            **({"given_split": given[split]} if given else {}),
            "num_examples": sum(d["records"] for d in split_shards),
            "num_bytes": sum(d["bytes"] for d in split_shards),
            "num_shards": len(split_shards),
            **({"shard_sizing": shard_sizing[split]} if shard_sizing and split in shard_sizing else {}),
            "shards": split_shards,
            "statistics": split_stats,
        }
    written = sum(s["num_examples"] for s in splits.values())
    by_action: dict[str, dict[str, int]] = {"dropped": {}, "rejected": {}}
    for (action, key), n in sorted(quarantined):
        by_action[action][key] = int(n)
    root = dataset_dir.rstrip("/") + "/"
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "compression": compression,
        "schema": schema_json,
        "encoding": encoding_json(schema_json, compression),
        "splits": splits,
        "source": {
            "fingerprint": fingerprint,
            "rows_read": int(rows_read),
            "rows_written": int(written),
            "rows_dropped": sum(by_action["dropped"].values()),
            "rows_rejected": sum(by_action["rejected"].values()),
            "dropped": by_action["dropped"],
            "rejected": by_action["rejected"],
            # the first rejected row of each kind, to quote when the run is refused
            "rejected_examples": {key: message for key, (_, _, message) in sorted(examples)},
            "quarantine": sorted(p[len(root):] if p.startswith(root) else p for p in quarantine_files),
        },
        "options": options,
        "versions": versions,
    }


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("tfstream", "apache-beam", "tensorflow", "keras", "pyarrow"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _feature_policies(config: JobConfig) -> dict[str, dict[str, Any]]:
    """What the training split's statistics record about each feature's preprocessing,
    for the model to repeat it: imputation, and the out-of-vocabulary buckets."""
    out: dict[str, dict[str, Any]] = {}
    for f in config.features:
        if "impute" in (f.on_missing, f.on_nan):
            out.setdefault(f.name, {})["impute"] = "mean"
        if f.type == "string":
            out.setdefault(f.name, {})["oov_buckets"] = f.oov_buckets
    return out

