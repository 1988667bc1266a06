"""Run a selection of the benchmarks and write their results (``tfstream bench``)."""

from __future__ import annotations

import datetime
import importlib
import os
import platform
import sys
import time
import traceback
from typing import Callable, Optional, Sequence

from benchmarks import report
from benchmarks.common import BenchmarkSkipped, check_scale
from tfstream.pipelines import progress

BENCHMARKS = {
    "B1": "b1_reader",
    "B2": "b2_overhead",
    "B3": "b3_streaming",
    "B4": "b4_memory",
    "B5": "b5_padding",
    "B6": "b6_preprocess",
    "B7": "b7_first_batch",
    "B8": "b8_preprocess_scaling",
    "B9": "b9_data_service",
    "B10": "b10_write_arrays",
}


def select(only: Optional[str | Sequence[str]]) -> list[str]:
    """Benchmark names from ``"B1,B3"`` (or a list); all of them for None."""
    if not only:
        return list(BENCHMARKS)
    names = [n.strip().upper() for n in (only.split(",") if isinstance(only, str) else only) if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise ValueError(f"--only: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    return [n for n in BENCHMARKS if n in names]


def run_one(name: str, scale: str, workdir: str) -> dict:
    """One benchmark's result with ``status`` ok, skipped (with ``reason``) or error (with
    ``error``, the traceback), and ``seconds``."""
    start = time.perf_counter()
    try:
        module = importlib.import_module(f"benchmarks.{BENCHMARKS[name]}")
        out = dict(module.run(scale, workdir), status="ok")
    except BenchmarkSkipped as e:
        out = {"benchmark": name, "status": "skipped", "reason": str(e)}
    except Exception:  # noqa: BLE001 - one benchmark's failure must not lose the others' results
        out = {"benchmark": name, "status": "error", "error": traceback.format_exc()}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


def _machine() -> dict:
    info = {"python": sys.version.split()[0], "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    for module in ("tensorflow", "keras", "apache_beam", "numpy"):
        mod = sys.modules.get(module)
        if mod is not None:
            info[module] = getattr(mod, "__version__", "?")
    return info


def run_suite(scale: str, workdir: str, out_dir: str, only=None,
              log: Callable[[str], None] = lambda message: None) -> dict:
    """Run the benchmarks, write ``<out_dir>/results.json`` and the plots; return the results."""
    check_scale(scale)
    names = select(only)
    os.makedirs(workdir, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    start = time.perf_counter()
    load_before = _machine().get("load_average")
    benchmarks = {}
    with progress.Progress("bench") as shown, progress.quiet():  # what the benchmarks run draws nothing
        shown.add("done", "benchmarks run", total=len(names), unit="benchmarks")
        for name in names:
            log(f"bench {name} ({BENCHMARKS[name]}, {scale}) ...")
            benchmarks[name] = run_one(name, scale, workdir)
            r = benchmarks[name]
            log(f"bench {name}: {r['status']} in {r['seconds']:.1f} s"
                + (f" ({r['reason']})" if r["status"] == "skipped" else ""))
            if r["status"] == "error":
                log(r["error"].rstrip().splitlines()[-1])
            shown.advance("done")
    results = {"scale": scale, "started": started, "seconds": round(time.perf_counter() - start, 2),
               "workdir": os.path.abspath(workdir), "machine": dict(_machine(), load_average_before=load_before),
               "benchmarks": benchmarks}
    results["plots"] = report.write_plots(benchmarks, out_dir)
    results["results_json"] = report.write_json(results, out_dir)
    return results
