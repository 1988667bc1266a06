"""One writer at a time per dataset directory.

A run (`preprocess`, `write_arrays`, `tfstream gc`) holds an exclusive `fcntl.flock` on
``DATASET/.tfstream.lock`` from before it creates its snapshot folder until it has
published (or refused) and collected garbage. A second run exits at once with
`DatasetBusyError` (the CLI's exit status 75, EX_TEMPFAIL: try again later), or, with
``wait=True`` (``--wait``), blocks until the first one finishes. The lock dies with its
process, so a killed run never leaves a stale lock behind.

Object stores (``gs://``, ``s3://``) have no such lock: for a remote dataset directory
the lock is not taken, and two runs into the same remote directory at once are the
caller's to prevent (a scheduler's concurrency limit, one writer per path). Each run
still writes its own snapshot and publishes by writing one object, so a reader never
sees a mix; the last run to publish wins.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from typing import Iterator

from tfstream.pipelines import fs
from tfstream.pipelines.snapshots import LOCK_NAME

_log = logging.getLogger(__name__)

BUSY_EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again later


class DatasetBusyError(RuntimeError):
    """Another run holds the dataset directory's lock."""


@contextlib.contextmanager
def locked(dataset_dir: str, *, wait: bool = False) -> Iterator[None]:
    """Hold the dataset directory's writer lock for the ``with`` block.

    Args:
        dataset_dir: the dataset directory (created if needed).
        wait: block until the lock is free, instead of failing at once.

    Raises:
        DatasetBusyError: another run holds the lock (and ``wait`` is false).
    """
    if fs.is_remote(dataset_dir):
        yield
        return
    os.makedirs(dataset_dir, exist_ok=True)
    path = os.path.join(dataset_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            if not wait:
                holder = _holder(fd)
                raise DatasetBusyError(
                    f"{dataset_dir}: another tfstream run is writing this dataset{holder}; wait for it to finish, "
                    f"or pass --wait (wait=True) to start when it has") from None
            _log.info("%s: another run is writing this dataset; waiting for it to finish", dataset_dir)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message a second run prints
        yield
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
