"""Replacing a dataset directory's content with a finished run, all or nothing.

A preprocessing run writes into a staging folder inside the dataset directory. Only when
the pipeline has succeeded does `publish` move the new shards into place and write the
new manifest, last and atomically. While the shards move there is no manifest, so no
reader sees a half-replaced dataset; if a move fails, the previous shards and manifest
are put back. Old shards of any shard count are removed, so that a glob-based reader
finds only the new ones.
"""

from __future__ import annotations

import json
import os
import uuid

from tfstream.pipelines import fs
from tfstream.pipelines.manifest import (
    MANIFEST_NAME,
    PREVIOUS_MANIFEST_NAME,
    write_manifest,
)
from tfstream.pipelines.shards import is_shard_of
from tfstream.pipelines.write.tfds_metadata import DATASET_INFO_NAME, FEATURES_NAME, write_tfds_metadata


STAGING_PREFIX = ".staging-"


class PublishError(RuntimeError):
    """Publishing failed and could not be fully undone; the message says where things are."""


def staging_dir(dataset_dir: str) -> str:
    """A new, unique staging folder inside ``dataset_dir`` (hidden: a dot name)."""
    return fs.join(dataset_dir, f"{STAGING_PREFIX}{uuid.uuid4().hex[:12]}")


QUARANTINE_DIR = "quarantine"


def _old_files(dataset_dir: str, name: str, splits) -> list[str]:
    """The dataset's shards in the split folders, of any earlier run and shard count,
    and its quarantine files."""
    return [p for split in splits
            for p in fs.glob(fs.join(dataset_dir, split, f"{name}-*"))
            if is_shard_of(os.path.basename(p), name)] + fs.glob(fs.join(dataset_dir, QUARANTINE_DIR, "*.jsonl"))


def _tfds_files(dataset_dir: str) -> list[str]:
    names = [fs.join(dataset_dir, n) for n in (DATASET_INFO_NAME, FEATURES_NAME)]
    return [p for p in names if fs.exists(p)] + fs.glob(fs.join(dataset_dir, "*.labels.txt"))


def publish(staging: str, dataset_dir: str, splits) -> None:
    """Move a finished run from ``staging`` into ``dataset_dir`` (see the module doc).

    Args:
        staging: the run's staging folder, holding its shards and manifest.
        dataset_dir: the dataset directory.
        splits: every split name the config can write (old shards of each are removed).
    """
    data = json.loads(fs.read_bytes(fs.join(staging, MANIFEST_NAME)).decode("utf-8"))
    aside = fs.join(dataset_dir, f".previous-{uuid.uuid4().hex[:12]}")
    moved: list[tuple[str, str]] = []  # (from, to), undone in reverse order on failure
    written: list[str] = []
    retired = _retire_manifest(dataset_dir)
    try:
        # TFDS finds a dataset by its dataset_info.json: set it aside with the manifest,
        # so that TFDS readers too never see a half-replaced dataset.
        for path in _tfds_files(dataset_dir):
            target = fs.join(aside, os.path.basename(path))
            fs.rename(path, target)
            moved.append((path, target))
        for path in _old_files(dataset_dir, data["name"], splits):
            split = os.path.basename(os.path.dirname(path.rstrip("/")))
            target = fs.join(aside, split, os.path.basename(path))
            fs.rename(path, target)
            moved.append((path, target))
        new_files = [shard["file"] for split in data["splits"].values() for shard in split["shards"]]
        for rel in new_files + list(data["source"].get("quarantine", [])):
            src, dst = fs.join(staging, rel), fs.join(dataset_dir, rel)
            fs.rename(src, dst)
            moved.append((src, dst))
        written = write_tfds_metadata(dataset_dir, data)  # so that tensorflow-datasets can load the shards too
        write_manifest(dataset_dir, data)
    except BaseException as error:
        for path in written:  # describes the new shards, which go back to the staging folder
            fs.remove(path)
        stuck = []
        for src, dst in reversed(moved):
            try:
                fs.rename(dst, src)
            except Exception:  # noqa: BLE001 - keep undoing; reported below
                stuck.append(dst)
        if stuck:
            # Keep every copy: the previous shards that could not be moved back are only here.
            raise PublishError(
                f"{dataset_dir}: publishing failed ({error}) and {len(stuck)} file(s) could not be moved back; "
                f"the previous shards are in {aside}, the new ones in {staging}, and the previous manifest is "
                f"{PREVIOUS_MANIFEST_NAME}: move them back by hand"
            ) from error
        if retired:
            _restore_manifest(dataset_dir)
        fs.remove_tree(staging)
        fs.remove_tree(aside)
        raise
    fs.remove_tree(aside)
    fs.remove_tree(staging)


def _retire_manifest(dataset_dir: str) -> bool:
    """Move an existing manifest aside (to ``manifest.previous.json``) before a finished
    run replaces the shards, so that the directory has no manifest, and is not readable,
    until the new manifest is written. Returns whether there was one."""
    current = fs.join(dataset_dir, MANIFEST_NAME)
    if not fs.exists(current):
        return False
    fs.rename(current, fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME))
    return True


def _restore_manifest(dataset_dir: str) -> None:
    """Undo `_retire_manifest` (a run failed while replacing the shards)."""
    fs.rename(fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME), fs.join(dataset_dir, MANIFEST_NAME))


def sweep_staging(dataset_dir: str) -> None:
    """Remove staging folders that killed runs left behind (local directories only)."""
    if fs.is_remote(dataset_dir) or not os.path.isdir(dataset_dir):
        return
    for name in os.listdir(dataset_dir):
        if name.startswith(STAGING_PREFIX):
            fs.remove_tree(os.path.join(dataset_dir, name))
