"""What every benchmark shares: scales, alternating repetitions, figures, timing, and
peak memory measured in fresh processes.

Peak RSS is the ``VmHWM`` (high-water mark of the resident set) of the measured process
itself, read from ``/proc``. ``getrusage``'s ``ru_maxrss`` of a child is not used: on
Linux a child started with fork/vfork + exec inherits the high-water mark of the parent's
address space at exec time, so every child of a parent holding TensorFlow would report
at least the parent's peak (measured here: a ``python -c pass`` child of a 2 GiB parent
reports 2 GiB).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Mapping, Optional, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCALES = ("smoke", "full")
RESULT_PREFIX = "BENCH_RESULT "
_OPS = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t, ">": lambda v, t: v > t, "<": lambda v, t: v < t}


class BenchmarkSkipped(Exception):
    """A benchmark that cannot run in this checkout; the message says what is missing."""


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {', '.join(SCALES)}; got {scale!r}")
    return scale


def pick(scale: str, *, smoke: Any, full: Any) -> Any:
    """The value of a parameter at ``scale``."""
    return smoke if check_scale(scale) == "smoke" else full


def reps(scale: str, *, full: int = 5, smoke: int = 2) -> int:
    """Repetitions: at least 5 at full scale (the issue's rule), fewer for a smoke run."""
    return pick(scale, smoke=smoke, full=max(5, full))


def fresh_processes(scale: str) -> bool:
    """Whether measured runs get a fresh process each: always at full scale. A smoke run
    (whose numbers mean nothing, and which must stay short) runs them in its own process,
    except B7's, which keeps the fresh-process path tested."""
    return pick(scale, smoke=False, full=True)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def alternate(variants: Mapping[str, Callable[[], Any]], repetitions: int) -> dict[str, list[Any]]:
    """Run every variant once per repetition, rotating the order each repetition
    (AB BA AB ... for two, ABC BCA CAB ... for three), so that a slow spell of this shared
    machine, or a warm cache, falls on every variant alike.

    Returns:
        variant name → the list of its results, in repetition order.
    """
    names = list(variants)
    out: dict[str, list[Any]] = {name: [] for name in names}
    for r in range(repetitions):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(variants[name]())
    return out


def figure(name: str, value: float, target: float, op: str, *, unit: str = "ratio", what: str = "") -> dict:
    """One headline number with its target; ``met`` says whether ``value op target``."""
    if op not in _OPS:
        raise ValueError(f"op: expected one of {', '.join(_OPS)}; got {op!r}")
    value = float(value)
    return {"name": name, "value": value, "target": float(target), "op": op, "unit": unit,
            "met": bool(math.isfinite(value) and _OPS[op](value, target)), "what": what}


def result(benchmark: str, title: str, scale: str, figures: list[dict], *, raw: Mapping[str, Any],
           values: Optional[Mapping[str, Any]] = None, params: Optional[Mapping[str, Any]] = None,
           notes: Sequence[str] = (), plots: Optional[Mapping[str, Any]] = None) -> dict:
    """A benchmark's result: its figures (ratios with targets), the raw per-repetition
    numbers they are medians of, other measured values, the parameters, and notes."""
    return {"benchmark": benchmark, "title": title, "scale": scale, "figures": figures, "raw": dict(raw),
            "values": dict(values or {}), "params": dict(params or {}), "notes": list(notes),
            "plots": dict(plots or {})}


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._start


# --------------------------------------------------------------------------- processes


def records_written(manifest) -> int:
    """Every split's record count of one written dataset (each writer is called once)."""
    return sum(manifest.num_examples(split) for split in manifest.split_names)


def rows_per_second(scratch: str, rows: int, written: dict) -> Callable[[str, Callable[[str], Any]], float]:
    """``timed(name, fn)``: run ``fn(out)`` in a fresh folder under ``scratch`` (removed
    after), keep its result in ``written[name]`` (to check that every variant wrote the
    same), and return ``rows`` per second of its wall time."""
    import shutil

    def timed(name: str, fn: Callable[[str], Any]) -> float:
        out = tempfile.mkdtemp(prefix=f"{name}-", dir=scratch)
        try:
            with Timer() as t:
                written[name] = fn(out)
            return rows / t.seconds
        finally:
            shutil.rmtree(out, ignore_errors=True)

    return timed


def vmhwm_mb(pid: Any = "self") -> Optional[float]:
    """Peak resident set (VmHWM) of a process, in MB (10^6 bytes, the unit of the
    issue's targets); None when it is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6  # /proc says kB: KiB
    except (OSError, ValueError):
        return None
    return None


def child_env() -> dict:
    """The environment of a measured process: this checkout importable, TF quiet."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.setdefault("GRPC_VERBOSITY", "ERROR")
    return env


class ChildError(RuntimeError):
    """A measured process that failed; the message holds the end of its stderr."""


def run_measured(cmd: Sequence[str], *, timeout: float = 3600, poll: float = 0.05,
                 cwd: Optional[str] = None) -> dict:
    """Run ``cmd`` in a fresh process; return its exit code, wall time, output and peak RSS.

    The peak RSS is the process's VmHWM, polled every ``poll`` seconds (it only grows, so
    the last poll before the exit misses at most the last ``poll`` seconds). Processes run
    through `run_child` also report their own VmHWM just before they exit, which is exact.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, env=child_env(), cwd=cwd or ROOT)
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        peak = 0.0
        try:
            while proc.poll() is None:
                value = vmhwm_mb(proc.pid)
                if value:
                    peak = max(peak, value)
                time.sleep(poll)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    return {"returncode": proc.returncode, "wall_seconds": wall, "stdout": stdout, "stderr": stderr,
            "polled_peak_rss_mb": peak, "timed_out": proc.returncode == -9 and wall >= timeout}


def run_child(target: str, args: Mapping[str, Any], *, timeout: float = 3600, fresh: bool = True) -> dict:
    """Run ``module:function(args)`` of this package in a fresh Python process.

    The function returns a JSON-able dict; the result adds ``peak_rss_mb`` (the child's
    own VmHWM at exit, or the polled one if larger) and ``wall_seconds`` (the whole
    process, imports included). With ``fresh=False`` the function runs in this process
    instead (smoke runs: the peak RSS is then this process's, and means nothing).

    Raises:
        ChildError: the process failed; the message holds the end of its stderr.
    """
    if not fresh:
        import importlib

        module, _, function = target.partition(":")
        start = time.perf_counter()
        out = getattr(importlib.import_module(f"benchmarks.{module}"), function)(json.loads(json.dumps(dict(args))))
        return dict(out, peak_rss_mb=vmhwm_mb() or 0.0, wall_seconds=time.perf_counter() - start)
    cmd = [sys.executable, "-m", "benchmarks._child", target, json.dumps(dict(args))]
    run = run_measured(cmd, timeout=timeout)
    lines = [ln for ln in run["stdout"].splitlines() if ln.startswith(RESULT_PREFIX)]
    if run["returncode"] != 0 or not lines:
        tail = "\n".join(run["stderr"].strip().splitlines()[-15:])
        raise ChildError(f"{target} exited with {run['returncode']}{' (timed out)' if run['timed_out'] else ''}:"
                         f"\n{tail}")
    out = json.loads(lines[-1][len(RESULT_PREFIX):])
    out["peak_rss_mb"] = max(out.pop("vmhwm_mb", 0.0) or 0.0, run["polled_peak_rss_mb"])
    out["wall_seconds"] = run["wall_seconds"]
    return out


def import_tensorflow_quietly() -> None:
    """Import TensorFlow without its start-up lines (`tfstream.cli`'s way), and
    turn its and Keras's Python logging down."""
    from tfstream.cli import import_tensorflow_quietly as quiet_import

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    quiet_import()
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\..*")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:
        pass


def epoch_timer():
    """A Keras callback that appends every epoch's wall time (seconds) to ``.seconds``."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()
