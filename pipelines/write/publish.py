"""Publishing a finished run as the dataset's new snapshot, and removing old snapshots.

A run writes everything into its own snapshot folder (`snapshots`). `publish` makes it
the dataset in one atomic step: the manifest, its shard paths made relative to the
dataset directory and a ``snapshot`` block added (id, parent, time), is written into
the snapshot folder and then put over ``DATASET/manifest.json`` with `os.replace`. No
file a published manifest names is renamed, moved or deleted, so a reader of the
previous snapshot is never disturbed, and a kill at any moment leaves the old snapshot
or the new one published. The tensorflow-datasets metadata (`tfds_metadata`) follows:
in the snapshot folder (it never changes) and at the dataset's root (it names the
published snapshot's files).

`collect_garbage` removes what no reader needs any more, under the writer lock
(`lock.locked`): snapshot folders of killed runs at once; a published snapshot only when
it is neither the current nor the previous one, was replaced more than the retention
period ago, and no reader pins it (`snapshots.pin`). A format-2 dataset (shards in
``DATASET/<split>/``) is adopted first (`adopt_legacy`): its manifest is copied into a
snapshot folder of its own, so its files are removed like any snapshot's.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import os
import re
from typing import Any, Mapping, Optional

from tfstream.pipelines import fs
from tfstream.pipelines.manifest import FORMAT_VERSION, MANIFEST_NAME, ManifestError, load_manifest, write_manifest
from tfstream.pipelines.manifest_shape import inside
from tfstream.pipelines.snapshots import SNAPSHOTS_DIR, is_pinned, snapshot_dir, snapshot_info
from tfstream.pipelines.write.tfds_metadata import write_tfds_metadata

_log = logging.getLogger(__name__)

QUARANTINE_DIR = "quarantine"
QUARANTINE_FILE = "rows-00000-of-00001.jsonl"  # a run's rows left out, one JSON line each


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def published_data(run_data: Mapping[str, Any], snapshot_id: str, parent: Optional[str]) -> dict[str, Any]:
    """The manifest a run publishes: its paths (relative to its snapshot folder) made
    relative to the dataset directory, and its ``snapshot`` block."""
    prefix = f"{SNAPSHOTS_DIR}/{snapshot_id}/"
    data = json.loads(json.dumps(run_data))  # a deep copy of plain JSON
    for split in data["splits"].values():
        for shard in split["shards"]:
            shard["file"] = prefix + shard["file"]
    data["source"]["quarantine"] = [prefix + q for q in data["source"].get("quarantine", [])]
    data["format_version"] = FORMAT_VERSION
    data["snapshot"] = {"id": snapshot_id, "parent": parent,
                        "published_at": _now().isoformat(timespec="microseconds")}
    return data


def publish(staging: str, dataset_dir: str, snapshot_id: str, parent: Optional[str]) -> dict[str, Any]:
    """Publish the finished run in ``staging`` (its snapshot folder) as the dataset.

    Args:
        staging: the run's snapshot folder, holding its shards and its manifest (paths
            relative to the folder).
        dataset_dir: the dataset directory.
        snapshot_id: the run's snapshot id (the folder's name).
        parent: the id of the snapshot published before, if any.

    Returns:
        The published manifest's content.
    """
    run_data = fs.read_json_object(fs.join(staging, MANIFEST_NAME))
    if run_data is None:
        raise RuntimeError(f"{staging}: the run's manifest is missing or unreadable; nothing was published")
    # TFDS metadata of the snapshot itself: `tfds.builder_from_directory(<snapshot folder>)`
    # reads exactly this snapshot, forever.
    write_tfds_metadata(staging, run_data)
    data = published_data(run_data, snapshot_id, parent)
    write_manifest(staging, data)
    write_manifest(dataset_dir, data)  # the commit: one atomic replace
    try:  # the root's TFDS metadata names the published snapshot's files
        write_tfds_metadata(dataset_dir, data)
    except OSError as e:  # the dataset is published; only TFDS's view of it is stale
        _log.warning("%s: published, but its tensorflow-datasets metadata could not be written (%s); "
                     "tfds.builder_from_directory(%r) reads this snapshot", dataset_dir, e, staging)
    return data


def legacy_id(data: Mapping[str, Any]) -> str:
    """The snapshot id a format-2 manifest is adopted under: fixed by its content, so the
    adoption is the same however often it runs."""
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()[:6]
    created = "".join(c for c in str(data.get("created_at") or "") if c.isalnum())[:15] or "unknown"
    return f"v2-{created}-{digest}"


def published(dataset_dir: str) -> tuple[bool, Optional[dict[str, Any]]]:
    """``(has a manifest.json, its content)``: the content only when it is a manifest
    this tfstream reads (`load_manifest`'s checks: format and shape), else None."""
    if not fs.exists(fs.join(dataset_dir, MANIFEST_NAME)):
        return False, None
    try:
        return True, dict(load_manifest(dataset_dir).data)
    except ManifestError:
        return True, None


def current_id(dataset_dir: str) -> tuple[bool, Optional[str]]:
    """``(has a manifest, the published snapshot's id)``: the id is None when there is no
    manifest, or one that this tfstream cannot read (then nothing is garbage-collected);
    a format-2 manifest has the id it is adopted under (`legacy_id`)."""
    exists, data = published(dataset_dir)
    if data is None:
        return exists, None
    info = snapshot_info(data)
    return True, str(info["id"]) if info else legacy_id(data)


def adopt_legacy(dataset_dir: str) -> Optional[str]:
    """Give a dataset published before snapshots (format 2, shards in ``<split>/``) a
    snapshot folder holding a copy of its manifest (its files stay where they are), so
    that the next run names it as its parent and `collect_garbage` later removes its
    files like any old snapshot's. Returns the id of the published snapshot, or None
    when there is no manifest that this tfstream reads."""
    _, data = published(dataset_dir)
    if data is None:
        return None
    info = snapshot_info(data)
    if info is not None:
        return str(info["id"])
    sid = legacy_id(data)
    target = fs.join(snapshot_dir(dataset_dir, sid), MANIFEST_NAME)
    if not fs.exists(target):
        adopted = dict(data, snapshot={"id": sid, "parent": None, "legacy": True,
                                       "published_at": data.get("created_at")})
        fs.makedirs(snapshot_dir(dataset_dir, sid))
        fs.write_atomic(target, json.dumps(adopted, indent=1).encode("utf-8"))
    return sid


@dataclasses.dataclass(frozen=True)
class GarbageReport:
    """What `collect_garbage` did: snapshot ids removed, and kept with the reason."""

    removed: tuple[str, ...]
    kept: tuple[tuple[str, str], ...]


def _named_files(data: Optional[Mapping[str, Any]]) -> set[str]:
    if not data:
        return set()
    files = {s["file"] for split in data.get("splits", {}).values() for s in split.get("shards", ())}
    return files | set(data.get("source", {}).get("quarantine", ()))


def _parse_time(value: Any) -> Optional[datetime.datetime]:
    try:
        out = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return out if out.tzinfo else out.replace(tzinfo=datetime.timezone.utc)


def _id_time(snapshot_id: str) -> Optional[datetime.datetime]:
    """When a run started, from its snapshot id (`snapshots.new_snapshot_id`)."""
    try:
        return datetime.datetime.strptime(snapshot_id[:16], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def _snapshot_ids(dataset_dir: str) -> list[str]:
    """The snapshot folders' ids. Object stores have no folders: there, every object's
    path under ``snapshots/`` names one."""
    root = fs.join(dataset_dir, SNAPSHOTS_DIR)
    if not fs.is_remote(dataset_dir):
        return sorted(os.listdir(root)) if os.path.isdir(root) else []
    prefix = root.rstrip("/") + "/"
    return sorted({p[len(prefix):].split("/", 1)[0] for p in fs.glob(prefix + "**") if p.startswith(prefix)})


def _legacy_files(data: Mapping[str, Any], protected: set[str]) -> list[str]:
    """The files of an adopted format-2 snapshot that garbage collection removes: those
    its manifest names, inside the dataset's split and quarantine folders, that no kept
    manifest names."""
    folders = set(data.get("splits", {})) | {QUARANTINE_DIR}
    return sorted(rel for rel in _named_files(data) - protected
                  if inside(rel) and rel.replace("\\", "/").split("/", 1)[0] in folders and "/" in rel)


def collect_garbage(dataset_dir: str, retention_hours: float) -> GarbageReport:
    """Remove old snapshots and the leftovers of killed runs (see the module doc). The
    caller holds the writer lock (`lock.locked`; object stores have none, so there a
    folder that was never published is removed only after the retention too: it may be
    a running run's).

    Args:
        dataset_dir: the dataset directory.
        retention_hours: a replaced snapshot is kept this long after it was replaced.
    """
    has_manifest, root_data = published(dataset_dir)
    if has_manifest and root_data is None:
        _log.warning("%s: manifest.json is not a manifest this tfstream reads; no snapshot is removed", dataset_dir)
        return GarbageReport((), ())
    info = snapshot_info(root_data) if root_data else None
    current = (str(info["id"]) if info else legacy_id(root_data)) if root_data else None
    names = _snapshot_ids(dataset_dir)
    manifests = {n: fs.read_json_object(fs.join(snapshot_dir(dataset_dir, n), MANIFEST_NAME)) for n in names}
    chain: list[str] = []  # current, previous, ...: the published snapshots, newest first
    sid = current
    while sid in manifests and manifests[sid] is not None and sid not in chain:
        chain.append(sid)
        sid = (snapshot_info(manifests[sid]) or {}).get("parent")
    # The current snapshot and its parent are kept whatever their folders hold, and so is
    # every file the published manifest names.
    keep = set(chain[:2]) | {current, (info or {}).get("parent")} - {None}
    protected = _named_files(root_data).union(*(_named_files(manifests.get(k)) for k in keep))
    replaced_at = {older: _parse_time((snapshot_info(manifests[newer]) or {}).get("published_at"))
                   for newer, older in zip(chain, chain[1:])}
    oldest = _now() - datetime.timedelta(hours=retention_hours)
    removed, kept, emptied = [], [], set()
    for name in names:
        data = manifests[name]
        snap = snapshot_info(data) if data else None
        if name in keep:
            kept.append((name, "current" if name == current else "previous"))
            continue
        if snap is not None:  # published (or about to be, when its run was killed)
            since = replaced_at.get(name) or _parse_time(snap.get("published_at"))
        else:  # a killed run's folder, never published: only a running run's is in use
            since = _id_time(name) if fs.is_remote(dataset_dir) else None
        if since is not None and since > oldest:
            kept.append((name, f"since {since.isoformat(timespec='seconds')}, within the retention"))
            continue
        folder = snapshot_dir(dataset_dir, name)
        if not fs.is_remote(folder) and is_pinned(folder):
            kept.append((name, "a reader pins it"))
            continue
        if snap is not None and snap.get("legacy"):  # a format-2 dataset's files are outside its folder
            for rel in _legacy_files(data, protected):
                path = fs.join(dataset_dir, rel)
                if fs.exists(path):
                    fs.remove(path)
                emptied.add(rel.rsplit("/", 1)[0])
        fs.remove_tree(folder)
        removed.append(name)
    _remove_leftovers(dataset_dir, has_manifest, emptied)
    return GarbageReport(tuple(removed), tuple(kept))


# `fs.write_atomic`'s temporary files, and what tfstream versions before snapshots left
# (publishing by renames): removed by `collect_garbage`, matched exactly.
_ATOMIC_TEMP = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")
_OLD_LEFTOVER = re.compile(r"\.(staging|previous)-[0-9a-f]{12}|manifest\.previous\.json")


def _remove_leftovers(dataset_dir: str, has_manifest: bool, emptied: set[str]) -> None:
    """Temporary files of killed atomic writes, what versions before snapshots left, and
    the folders (``train/``, ``quarantine/``) that removing a format-2 snapshot's files
    left empty (local directories only)."""
    if fs.is_remote(dataset_dir) or not os.path.isdir(dataset_dir):
        return
    for name in os.listdir(dataset_dir):
        path = os.path.join(dataset_dir, name)
        if _ATOMIC_TEMP.fullmatch(name) and os.path.isfile(path):
            os.remove(path)
        elif _OLD_LEFTOVER.fullmatch(name) and has_manifest:
            fs.remove_tree(path) if os.path.isdir(path) else os.remove(path)
    for rel in sorted(d for d in emptied if d):
        try:
            os.rmdir(os.path.join(dataset_dir, rel))  # only when empty: never a user's file
        except OSError:
            pass
