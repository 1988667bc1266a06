"""Datasets as immutable snapshots: the layout, and pinning a snapshot while it is read.

A dataset directory holds one folder per run, and one pointer, the manifest::

    DATASET/
      manifest.json                  the published snapshot: its shards, sizes, sha256s
      snapshots/<id>/                one run's files, never changed once published
        manifest.json                the same manifest (the snapshot describes itself)
        train/<name>-00000-of-00008.tfrecord, ...
        quarantine/rows-00000-of-00001.jsonl
        dataset_info.json, features.json   tensorflow-datasets metadata of this snapshot
      dataset_info.json, features.json     the same, for the published snapshot
      .tfstream.lock                 held by the run writing into the dataset

A run writes into a new snapshot folder of its own and publishes by replacing
``manifest.json`` in one atomic step (`os.replace`), as table formats such as Apache
Iceberg and Delta Lake commit a new snapshot. It never renames, moves or deletes a file
that a published manifest names, so a reader that loaded the manifest (a `Manifest`)
reads exactly that snapshot's files to the end, however often the dataset is
republished meanwhile. A kill at any moment leaves the old snapshot or the new one
published, never neither.

Old snapshots are removed by the next run (`pipelines.write.publish.collect_garbage`)
only when they are neither the current nor the previous one, were replaced more than
``output.snapshot_retention_hours`` ago, and no reader pins them (`pin`).

Manifests of format 2 (shards in ``DATASET/<split>/``, written before snapshots) stay
readable; the next run adopts such a dataset as a snapshot of its own (its files stay
where they are) and removes them like any other old snapshot.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import os
import uuid
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Optional

from tfstream.pipelines import fs

if TYPE_CHECKING:
    from tfstream.pipelines.manifest import Manifest

SNAPSHOTS_DIR = "snapshots"
LOCK_NAME = ".tfstream.lock"


def new_snapshot_id() -> str:
    """A new snapshot's id: its UTC start time (so ids sort by age) and a random part.

    Example:
        >>> a = new_snapshot_id()
        >>> len(a), a[8], a[15:17]
        (23, 'T', 'Z-')
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"{now:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}"


def snapshot_dir(dataset_dir: str, snapshot_id: str) -> str:
    """The folder of one snapshot."""
    return fs.join(dataset_dir, SNAPSHOTS_DIR, snapshot_id)


def snapshot_info(data: Mapping[str, Any]) -> Optional[Mapping[str, Any]]:
    """A manifest's ``snapshot`` block (``id``, ``parent``, ``published_at``), or None for a
    manifest written before snapshots (format 2)."""
    info = data.get("snapshot")
    return info if isinstance(info, Mapping) else None


@contextlib.contextmanager
def pin(dataset_dir: str, data: Mapping[str, Any]) -> Iterator[None]:
    """Keep the snapshot that a loaded manifest names from being garbage-collected while
    the ``with`` block runs (training, evaluation, export read it).

    A shared `fcntl.flock` on the snapshot's folder: any number of readers hold one at
    once, and `collect_garbage` skips a snapshot it cannot lock exclusively. The lock
    dies with the process. A no-op for remote datasets (object stores have no locks:
    there, a snapshot lives for ``output.snapshot_retention_hours`` after it was
    replaced) and for format-2 manifests.
    """
    info = snapshot_info(data)
    if info is None or fs.is_remote(dataset_dir):
        yield
        return
    try:
        fd = os.open(snapshot_dir(dataset_dir, str(info["id"])), os.O_RDONLY)
    except OSError:  # gone already: the reader's own checks name the missing files
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def pins(manifest: "Manifest") -> Iterator[None]:
    """`pin` every snapshot a loaded manifest reads: each dataset's of a training window
    (`Manifest.window`, see `pipelines.window`), else the manifest's own. Each is a
    shared lock on a local snapshot folder (none for a remote or format-2 dataset), all
    released when the block ends.
    """
    with contextlib.ExitStack() as stack:
        if manifest.window is None:
            stack.enter_context(pin(manifest.root, manifest.data))
        else:
            for dataset in manifest.window:
                if dataset.get("snapshot"):
                    stack.enter_context(pin(dataset["dir"], {"snapshot": {"id": dataset["snapshot"]}}))
        yield


def is_pinned(path: str) -> bool:
    """Whether a reader holds `pin` on the snapshot folder ``path`` (local only)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
