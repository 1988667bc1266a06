"""Progress on stderr while a command runs: counts (rows read, rows written per split,
shards, files), their rate, and the time left when the total is known (exact, or an
estimate marked ``~``). Drawn with `rich.progress`, only when stderr is a terminal and
``--quiet`` (the ``TFSTREAM_QUIET`` environment variable, which child processes
inherit) is not set: a piped or logged stderr, and stdout always, stay as they were.

Counting happens where the work passes. The code that does the work calls the
module-level `advance`, which counts into the `Progress` open in *this* process, and
does nothing elsewhere: Beam's DirectRunner (in its default ``in_memory`` mode) runs
the pipeline's steps in the driver's process, so they are counted live; a runner that
runs them in other processes (multi_processing, Dask, Dataflow...) counts nothing here,
and `preprocess` says so on its progress line instead of showing rows it cannot see.

Example:
    >>> with Progress("write") as progress:
    ...     progress.add("read", "rows read", total=1000)
    ...     advance("read", 600)
    ...     progress.completed("read")
    600
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator, Optional, TextIO

QUIET_ENV = "TFSTREAM_QUIET"

_active: Optional["Progress"] = None
_active_pid: Optional[int] = None
_lock = threading.Lock()


def set_quiet(quiet: bool = True) -> None:
    """Show no progress in this process and its children (the CLI's ``--quiet``)."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    else:
        os.environ.pop(QUIET_ENV, None)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """No progress drawn by what runs inside (in this process and the children it
    starts), e.g. the steps of a benchmark, whose own progress is drawn outside."""
    before = os.environ.get(QUIET_ENV)
    set_quiet(True)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = before


def shown(stream: Optional[TextIO] = None) -> bool:
    """Whether progress is drawn on ``stream`` (default: stderr): a terminal, and not quiet."""
    stream = stream if stream is not None else sys.stderr
    if os.environ.get(QUIET_ENV, "") not in ("", "0"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def advance(key: str, n: int = 1) -> None:
    """Count ``n`` more into the task ``key`` of the `Progress` open in this process
    (none: nothing happens; an unknown key is added, without a total)."""
    progress = _active
    if progress is not None and _active_pid == os.getpid():
        progress.advance(key, n)


class Progress:
    """A set of counters drawn as progress bars on stderr while open (a context manager).

    Counts are kept whether drawn or not (`completed`), so callers and tests read the
    same figures the bars show. One `Progress` is open per process at a time: the one
    that `advance` counts into.
    """

    def __init__(self, title: str, *, stream: Optional[TextIO] = None):
        self.title = title
        self._stream = stream if stream is not None else sys.stderr
        self._counts: dict[str, int] = {}
        self._tasks: dict[str, int] = {}
        self._lock = threading.Lock()
        self._rich = None
        self._final = False

    def __enter__(self) -> "Progress":
        global _active, _active_pid
        if _active is not None and _active_pid == os.getpid():
            return self  # inside another one (a verify inside a longer command): counted, not drawn
        if shown(self._stream):
            from rich.console import Console
            from rich.progress import BarColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

            self._rich = RichProgress(
                TextColumn(f"[bold]{self.title}[/bold] {{task.description}}"),
                BarColumn(bar_width=24),
                TextColumn("{task.fields[count]}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[left]}"),
                console=Console(file=self._stream),
                refresh_per_second=4,
            )
            self._rich.start()
        with _lock:
            _active, _active_pid = self, os.getpid()
        return self

    def __exit__(self, *exc) -> None:
        global _active, _active_pid
        with _lock:
            if _active is self:
                _active, _active_pid = None, None
        if self._rich is not None:
            self._final = True  # an estimated total gives way to the count
            for key in self._tasks:
                self._refresh(key)
            self._rich.stop()  # the last figures stay on the terminal
            self._rich = None

    def add(self, key: str, description: str, *, total: Optional[int] = None, estimated: bool = False,
            unit: str = "rows") -> None:
        """A counter ``key`` shown as ``description``; ``total`` gives the bar and the
        time left (``estimated``: shown as ``~total``)."""
        with self._lock:
            self._counts.setdefault(key, 0)
            if self._rich is not None and key not in self._tasks:
                from rich.markup import escape

                self._tasks[key] = self._rich.add_task(escape(description), total=total, count="", rate="", left="",
                                                       unit=unit, estimated=estimated)
        self._refresh(key)

    def advance(self, key: str, n: int = 1) -> None:
        if key not in self._counts:
            self.add(key, key)
        with self._lock:
            self._counts[key] += n
        self._refresh(key)

    def completed(self, key: str) -> int:
        return self._counts.get(key, 0)

    def _refresh(self, key: str) -> None:
        if self._rich is None or key not in self._tasks:
            return
        task_id = self._tasks[key]
        task = self._rich.tasks[task_id]
        done = self._counts[key]
        unit = task.fields["unit"]
        total, estimated = task.total, task.fields["estimated"]
        if self._final and estimated:
            total, estimated = done, False
        if not unit:  # a line that says what runs, without a count
            count = ""
        elif total is None:
            count = f"{_amount(done, unit)} {_shown_unit(unit)}"
        else:
            count = f"{_amount(done, unit)} of {'~' if estimated else ''}{_amount(total, unit)} {_shown_unit(unit)}"
        # rich's speed is over the last 30 s of updates; at the end, a task updated once
        # (a fast step) gets its mean over its time instead.
        speed = task.speed or (done / task.elapsed if self._final and task.elapsed else None)
        rate = f"{_amount(speed, unit)} {_shown_unit(unit)}/s" if speed and unit else ""
        left = ""
        if not self._final and total is not None and speed:
            left = f"{'about ' if estimated else ''}{_clock(max(0, total - done) / speed)} left"
        # An estimated total may be passed: the bar stays just short of full until the end.
        total = None if total is None else max(total, done + (1 if estimated else 0))
        self._rich.update(task_id, completed=done, total=total, count=count, rate=rate, left=left)


def _amount(n: float, unit: str) -> str:
    return f"{n / 2**20:,.1f}" if unit == "bytes" else f"{n:,.0f}"


def _shown_unit(unit: str) -> str:
    return "MiB" if unit == "bytes" else unit


def _clock(seconds: float) -> str:
    minutes, second = divmod(int(seconds + 0.5), 60)
    hours, minute = divmod(minutes, 60)
    return f"{hours}:{minute:02d}:{second:02d}"
