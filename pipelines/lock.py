"""An exclusive lock on a local directory, held for a ``with`` block, that dies with its
process.

`locked` holds an `fcntl.flock` on a lock file inside the directory: a dataset's writer
lock (``DATASET/.tfstream.lock``, `pipelines.write.lock`) and a model registry's
(``models/<name>/.retrain.lock``, `training.registry`). A second process that asks for
the lock fails at once with `BusyError` (the CLI's exit status 75, EX_TEMPFAIL: try again
later), waits up to a number of seconds, or waits until the holder is done. The kernel
releases the lock when its process ends, however it ends, so a killed run never leaves a
stale lock behind. The lock file holds the holder's process id, for the message.

Example:
    >>> with locked(str(tmp_path), lock_name=".demo.lock", what="demo run is using this folder"):
    ...     with locked(str(tmp_path), lock_name=".demo.lock", what="demo run is using this folder"):
    ...         pass
    Traceback (most recent call last):
    ...
    tfstream.pipelines.lock.BusyError: ...: another demo run is using this folder (process ...); wait for it to finish, or pass --wait (wait=True) to start when it has
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import time
from typing import Iterator, Union

_log = logging.getLogger(__name__)

BUSY_EXIT_CODE = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again later
_POLL_SECONDS = 0.05  # how often a bounded wait tries the lock again


class BusyError(RuntimeError):
    """Another process holds the directory's lock; the CLI exits with `BUSY_EXIT_CODE`."""

    exit_code = BUSY_EXIT_CODE


@contextlib.contextmanager
def locked(directory: str, *, lock_name: str, what: str, wait: Union[bool, float] = False,
           error: type[BusyError] = BusyError) -> Iterator[None]:
    """Hold ``directory``'s lock for the ``with`` block.

    Args:
        directory: a local directory (created if needed).
        lock_name: the lock file's name inside ``directory``.
        what: what the holder is doing, as the busy message says it after "another"
            (``"retraining run is using this model registry"``).
        wait: False: fail at once when another process holds the lock; True: block until
            it is released; a number: try for that many seconds, then fail.
        error: the `BusyError` subclass to raise.

    Raises:
        BusyError: (``error``) another process holds the lock, and ``wait`` ran out.
        ValueError: ``wait`` is a negative or not finite number.
    """
    seconds = _wait_seconds(wait)
    os.makedirs(directory, exist_ok=True)
    fd = os.open(os.path.join(directory, lock_name), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _try_lock(fd):
            if seconds is None:
                _log.info("%s: another %s; waiting for it to finish", directory, what)
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                _wait_for(fd, directory, what, seconds, error)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)  # for the message a second run prints
        yield
    finally:
        os.close(fd)  # releases the lock


def _wait_seconds(wait: Union[bool, float]):
    """None to block; else the seconds to try for (0: once)."""
    if wait is True:
        return None
    if wait is False or wait is None:
        return 0.0
    if isinstance(wait, (int, float)) and math.isfinite(wait) and wait >= 0:
        return float(wait)
    raise ValueError(f"wait: expected True, False or a number of seconds >= 0, got {wait!r}")


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        return False


def _wait_for(fd: int, directory: str, what: str, seconds: float, error: type[BusyError]) -> None:
    """Try the lock until ``seconds`` have passed (flock has no timeout of its own)."""
    if seconds > 0:
        _log.info("%s: another %s; waiting up to %g s for it to finish", directory, what, seconds)
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(_POLL_SECONDS, left))
        if _try_lock(fd):
            return
    holder = _holder(fd)
    if seconds == 0:
        raise error(f"{directory}: another {what}{holder}; wait for it to finish, or pass --wait (wait=True) "
                    f"to start when it has") from None
    raise error(f"{directory}: another {what}{holder}; waited {seconds:g} s for it to finish; try again later, "
                f"or pass --wait (wait=True) to wait until it has") from None


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (process {pid})" if pid.isdigit() else ""
