"""One writer at a time per dataset directory.

A run (`preprocess`, `write_arrays`, `tfstream gc`) holds an exclusive `fcntl.flock` on
``DATASET/.tfstream.lock`` (`pipelines.lock.locked`) from before it creates its snapshot
folder until it has published (or refused) and collected garbage. A second run exits at
once with `DatasetBusyError` (the CLI's exit status 75, EX_TEMPFAIL: try again later),
or, with ``wait=True`` (``--wait``), blocks until the first one finishes (with a number,
for at most that many seconds). The lock dies with its process, so a killed run never
leaves a stale lock behind.

Object stores (``gs://``, ``s3://``) have no such lock: for a remote dataset directory
the lock is not taken, and two runs into the same remote directory at once are the
caller's to prevent (a scheduler's concurrency limit, one writer per path). Each run
still writes its own snapshot and publishes by writing one object, so a reader never
sees a mix; the last run to publish wins.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Union

from tfstream.pipelines import fs
from tfstream.pipelines import lock as _lock
from tfstream.pipelines.lock import BUSY_EXIT_CODE, BusyError
from tfstream.pipelines.snapshots import LOCK_NAME

__all__ = ["BUSY_EXIT_CODE", "BusyError", "DatasetBusyError", "locked"]


class DatasetBusyError(BusyError):
    """Another run holds the dataset directory's lock."""


@contextlib.contextmanager
def locked(dataset_dir: str, *, wait: Union[bool, float] = False) -> Iterator[None]:
    """Hold the dataset directory's writer lock for the ``with`` block.

    Args:
        dataset_dir: the dataset directory (created if needed).
        wait: block until the lock is free, instead of failing at once (a number: for
            at most that many seconds).

    Raises:
        DatasetBusyError: another run holds the lock (and ``wait`` ran out).
    """
    if fs.is_remote(dataset_dir):
        yield
        return
    with _lock.locked(dataset_dir, lock_name=LOCK_NAME, what="tfstream run is writing this dataset", wait=wait,
                      error=DatasetBusyError):
        yield
