"""B4 memory flatness: peak RSS of `tfstream train` on N and on 10·N rows, against the
seed's NumPy arrays in memory on the same rows.

Data: the flights training split, repeated to N and 10·N rows with a transform
(`data.repeated_flights`: the first copy verbatim, later copies with ``dep_delay``
jittered by Gaussian noise of sd 3 minutes and ``distance`` by up to ±2%), written as
``.npy`` columns chunk by chunk, then as tfstream datasets with the streaming
`pipelines.write.arrays.write_arrays` (the job: flights' features and model, the label already
0/1, splits train 90% / eval 10% by row position).

Every measurement is a fresh process (in a smoke run, the running one); peak RSS is its
VmHWM:

* ``tfstream``: the `tfstream train` command (``cli.main(["train", ...,
  "--epochs", "1"])``): one epoch on the train split streamed, evaluation on the eval
  split, saving and export;
* ``arrays``: the same columns read into memory (``np.load``, strings as object arrays,
  as pandas holds them), then ``fit(x, y, batch_size=256)`` for one epoch, capped at
  2,000 steps: Keras turns the whole arrays into tensors of its input pipeline before
  the first step, so the peak comes early, and the same steps at every size keep the
  work equal.

Sizes alternate within every repetition. Figures: the median over repetitions of
RSS(10·N) − RSS(N) for tfstream (target ≤ 50 MB), and the same for the arrays (which
should grow: target > 50 MB).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile

import yaml

from benchmarks import data
from benchmarks.common import (alternate, figure, fresh_processes, import_tensorflow_quietly, median, pick, reps,
                               result, run_child)

TARGET_FLAT_MB = 50.0
ARRAYS_MAX_STEPS = 2000


def b4_job(rows: int) -> dict:
    """The flights job over the repeated columns (label ``late`` already 0/1)."""
    job = data.job_dict("flights_dense.yaml")
    train_shards = max(2, round(rows * 0.9 / 250_000))
    job.update(
        name="flights-repeated",
        source={"format": "npz", "path": "flights-repeated.npz"},  # not read: write_arrays takes the arrays
        label={"name": "late", "column": "late", "task": "binary", "num_classes": 2},
        split={"fractions": {"train": 0.9, "eval": 0.1}},
        output={"num_shards": {"train": train_shards, "eval": max(1, train_shards // 8)}, "compression": "none"},
        train=dict(job["train"], validation_split=None, epochs=1),
    )
    return job


def train_child(args: dict) -> dict:
    """`tfstream train` in this process, as the console script runs it."""
    from tfstream.cli import main

    log = logging.getLogger("tfstream")
    handlers = list(log.handlers)
    try:
        rc = main(["train", "--config", args["config"], "--dataset", args["dataset"], "--model-dir",
                   args["model_dir"], "--epochs", "1"])
    finally:
        log.handlers[:] = handlers  # the CLI adds its handler on every call (smoke runs call it in-process)
    if rc != 0:
        raise RuntimeError(f"tfstream train exited with {rc}")
    return {"returncode": rc}


def arrays_child(args: dict) -> dict:
    """The seed's way: every column in memory, then ``fit`` on the arrays."""
    import_tensorflow_quietly()
    import keras

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.training.models import build_model

    config = config_from_dict(args["job"])
    manifest = load_manifest(args["dataset"])  # the same model as tfstream's (statistics of the train split)
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(manifest, config)
    columns = data.load_columns(args["columns"], mmap=False)
    y = columns.pop("late")
    x = {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in columns.items()}
    del columns
    # Keras puts the whole arrays into the input pipeline before the first step (as
    # tensors in the graph), so the peak is reached early: the same capped number of
    # steps at every size keeps the work equal and the run short.
    steps = min(-(-len(y) // config.reader.batch_size), ARRAYS_MAX_STEPS)
    model.fit(x, y, batch_size=config.reader.batch_size, epochs=1, steps_per_epoch=steps, verbose=0)
    return {"rows": int(len(y)), "steps": steps}


def run(scale: str, workdir: str) -> dict:
    n = pick(scale, smoke=2_000, full=1_000_000)
    sizes = (n, 10 * n)
    cache = data.cache_dir(workdir, scale)
    setups = {}
    for rows in sizes:
        columns = data.repeated_flights(workdir, scale, rows)
        job = b4_job(rows)
        dataset = data.dataset_from_arrays(job, columns, cache)
        config_path = os.path.join(cache, f"b4-{rows}.yaml")
        with open(config_path, "w", encoding="utf-8") as f:
            yaml.safe_dump(job, f)
        setups[rows] = {"columns": columns, "job": job, "dataset": dataset, "config": config_path}

    fresh = fresh_processes(scale)

    def tfstream_train(rows):
        model_dir = tempfile.mkdtemp(prefix="b4-model-", dir=cache)
        try:
            return run_child("b4_memory:train_child", {"config": setups[rows]["config"], "dataset":
                                                        setups[rows]["dataset"], "model_dir": model_dir}, fresh=fresh)
        finally:
            shutil.rmtree(model_dir, ignore_errors=True)

    def arrays_fit(rows):
        s = setups[rows]
        return run_child("b4_memory:arrays_child", {"job": s["job"], "dataset": s["dataset"], "columns": s["columns"]},
                         fresh=fresh)

    variants = {}
    for rows in sizes:
        variants[f"tfstream@{rows}"] = lambda rows=rows: tfstream_train(rows)
        variants[f"arrays@{rows}"] = lambda rows=rows: arrays_fit(rows)
    runs = alternate(variants, reps(scale, smoke=1))
    rss = {name: [r["peak_rss_mb"] for r in rs] for name, rs in runs.items()}
    small, large = sizes
    growth = {kind: [b - a for a, b in zip(rss[f"{kind}@{small}"], rss[f"{kind}@{large}"])]
              for kind in ("tfstream", "arrays")}
    series = {kind: {"rows": list(sizes), "peak_rss_mb": [median(rss[f"{kind}@{rows}"]) for rows in sizes]}
              for kind in ("tfstream", "arrays")}
    return result(
        "B4", "memory flatness", scale,
        [figure(f"tfstream train peak RSS, {large:,} rows − {small:,} rows", median(growth["tfstream"]),
                TARGET_FLAT_MB, "<=", unit="MB"),
         figure(f"arrays in memory peak RSS, {large:,} rows − {small:,} rows", median(growth["arrays"]),
                TARGET_FLAT_MB, ">", unit="MB", what="the seed's way grows with the data")],
        raw={"peak_rss_mb": rss, "growth_mb": growth, "wall_seconds": {k: [r["wall_seconds"] for r in v]
                                                                         for k, v in runs.items()}},
        values={"peak_rss_mb_median": {k: median(v) for k, v in rss.items()}},
        params={"sizes": list(sizes), "datasets": {str(k): v["dataset"] for k, v in setups.items()}},
        notes=["the larger datasets repeat the flights training split with a transform: copies after the first "
               "jitter dep_delay (Gaussian, sd 3 min) and distance (±2%)",
               "tfstream: `tfstream train --epochs 1` (fit on 90% of the rows, evaluate on 10%, save, export); "
               f"arrays: np.load of the columns, then fit one epoch capped at {ARRAYS_MAX_STEPS:,} steps"],
        plots={"rss_vs_rows": series},
    )
