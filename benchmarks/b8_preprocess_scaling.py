"""B8 write-side scaling: peak RSS and rows/s of `tfstream preprocess` on N and on 10·N
rows of the same table.

The job: the flights job (``configs/flights_dense.yaml``: 8 training shards, the
DirectRunner, Beam's default in-memory mode) with its source replaced by one plain CSV of
exactly N or 10·N data rows, the 336,776 flights of 2013 repeated
(`data.flights_table_csv`; N = 1,000,000 at full scale, 2,000 in a smoke run).

Every measurement is a fresh process at every scale (a smoke run too, so that this path
stays tested): ``python -m benchmarks._child`` calls `tfstream.cli.main(["preprocess",
"--config", C, "--output", DIR])`, as the console script ``tfstream preprocess --config C
--output DIR`` does, into a fresh empty directory (removed afterwards). Its peak RSS is
that process's own VmHWM, read just before it exits (`common.run_child`: not
``ru_maxrss``, which carries the parent's high-water mark over fork and exec). With the
DirectRunner's in-memory mode the pipeline runs inside that process: there are no
worker processes whose memory would be missed.

rows/s = the table's data rows (read, not written: rows that the job drops count) ÷ the
wall time of the whole process, start-up included (the Python interpreter, the imports of
Beam and pyarrow, the config and source checks): `tfstream preprocess` prints no
per-phase timing, so no time without start-up is recorded. Start-up is a few seconds, a
larger share of the small run's time than of the large one's, which favours the large size.

Figures: peak RSS at 10·N − peak RSS at N (target ≤ 100 MB), and rows/s at 10·N ÷ rows/s
at N (target ≥ 0.9). The sizes alternate within each repetition; the figures are medians
of per-repetition differences and ratios. Repetitions: ONE at full scale (the 10,000,000-
row run alone takes about 7 minutes on a 2-core machine), so the full-scale figures are
single measurements, not medians; one in a smoke run.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import yaml

from benchmarks import data
from benchmarks.common import alternate, figure, median, pick, result, run_child

TARGET_RSS_GROWTH_MB = 100.0
TARGET_SPEED_RATIO = 0.9
REPETITIONS = {"smoke": 1, "full": 1}


def preprocess_child(args: dict) -> dict:
    """`tfstream preprocess --config C --output DIR` in this process, as the console script
    runs it; returns the manifest's row counts."""
    import logging

    from tfstream.cli import main
    from tfstream.pipelines.manifest import load_manifest

    log = logging.getLogger("tfstream")
    handlers = list(log.handlers)
    try:
        rc = main(["preprocess", "--config", args["config"], "--output", args["output"]])
    finally:
        log.handlers[:] = handlers  # the CLI adds its handler on every call
    if rc != 0:
        raise RuntimeError(f"tfstream preprocess exited with {rc}")
    source = load_manifest(args["output"]).source
    return {"returncode": rc, "rows_read": int(source.rows_read), "rows_written": int(source.rows_written),
            "rows_dropped": int(source.rows_dropped), "rows_rejected": int(source.rows_rejected)}


def run(scale: str, workdir: str) -> dict:
    n = pick(scale, smoke=2_000, full=1_000_000)
    sizes = (n, 10 * n)
    cache = data.cache_dir(workdir, scale)
    scratch = os.path.join(cache, "b8-scratch")
    os.makedirs(scratch, exist_ok=True)
    configs = {}
    for rows in sizes:
        table = data.flights_table_csv(workdir, scale, rows)
        path = os.path.join(cache, f"b8-flights-{rows}rows.yaml")
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(data.job_dict("flights_dense.yaml", source={"path": table}), f)
        configs[rows] = {"config": path, "table": table, "table_bytes": os.path.getsize(table)}

    def preprocess(rows: int) -> dict:
        out = tempfile.mkdtemp(prefix=f"b8-{rows}-", dir=scratch)
        try:
            r = run_child("b8_preprocess_scaling:preprocess_child",
                          {"config": configs[rows]["config"], "output": out})
        finally:
            shutil.rmtree(out, ignore_errors=True)
        if r["rows_read"] != rows:
            raise RuntimeError(f"B8: preprocess read {r['rows_read']:,} rows of a {rows:,}-row table")
        return dict(r, rows_per_second=rows / r["wall_seconds"])

    runs = alternate({f"preprocess@{rows}": (lambda rows=rows: preprocess(rows)) for rows in sizes},
                     REPETITIONS[scale])
    small, large = sizes
    rss = {name: [r["peak_rss_mb"] for r in rs] for name, rs in runs.items()}
    speed = {name: [r["rows_per_second"] for r in rs] for name, rs in runs.items()}
    growth = [b - a for a, b in zip(rss[f"preprocess@{small}"], rss[f"preprocess@{large}"])]
    ratio = [b / a for a, b in zip(speed[f"preprocess@{small}"], speed[f"preprocess@{large}"])]
    return result(
        "B8", "write-side scaling", scale,
        [figure(f"tfstream preprocess peak RSS, {large:,} rows − {small:,} rows", median(growth),
                TARGET_RSS_GROWTH_MB, "<=", unit="MB"),
         figure(f"tfstream preprocess rows/s, {large:,} rows ÷ {small:,} rows (start-up included)",
                median(ratio), TARGET_SPEED_RATIO, ">=")],
        raw={"peak_rss_mb": rss, "rows_per_second": speed, "growth_mb": growth, "ratio": ratio,
             "wall_seconds": {k: [r["wall_seconds"] for r in v] for k, v in runs.items()},
             "rows_written": {k: [r["rows_written"] for r in v] for k, v in runs.items()},
             "rows_dropped": {k: [r["rows_dropped"] for r in v] for k, v in runs.items()}},
        values={"peak_rss_mb_median": {k: median(v) for k, v in rss.items()},
                "rows_per_second_median": {k: median(v) for k, v in speed.items()}},
        params={"sizes": list(sizes), "repetitions": REPETITIONS[scale], "cpus": os.cpu_count(),
                "configs": {str(k): v for k, v in configs.items()}},
        notes=["each run: a fresh process calling tfstream.cli.main(['preprocess', '--config', C, '--output', "
               "DIR]) on the DirectRunner (in-memory mode); peak RSS is its own VmHWM at exit",
               "rows/s = the table's rows ÷ the process's wall time, start-up and imports included (the CLI "
               "prints no per-phase timing)",
               f"{REPETITIONS[scale]} repetition(s) at this scale: the figures are single measurements"
               if REPETITIONS[scale] == 1 else f"{REPETITIONS[scale]} repetitions"],
    )
