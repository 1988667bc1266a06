"""B7 time to first batch: from a process that has imported TensorFlow (its import is
excluded) to the first training batch of the flights dataset in hand.

Each repetition is a fresh process: it imports TensorFlow, then starts the clock, imports
tfstream's reader, calls `read` with the trainer's settings (the job's reader section:
the shuffle buffer must fill before the first batch comes) and takes the first batch.
The figure is the median over the repetitions.
"""

from __future__ import annotations

import time

from benchmarks import data
from benchmarks.common import figure, import_tensorflow_quietly, median, reps, result, run_child

TARGET_SECONDS = 2.0


def child(args: dict) -> dict:
    import_tensorflow_quietly()  # excluded: the clock starts after it
    start = time.perf_counter()
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.read.reader import read

    config = config_from_dict(args["job"])
    ds = read(args["dataset"], "train", config.reader)
    features, _ = next(iter(ds))
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "batch_size": int(next(iter(features.values())).shape[0])}


def run(scale: str, workdir: str) -> dict:
    job = data.flights_job(workdir, scale)
    dataset = data.flights_dataset(workdir, scale)
    runs = [run_child("b7_first_batch:child", {"job": job, "dataset": dataset}) for _ in range(reps(scale, smoke=1))]
    seconds = [r["seconds"] for r in runs]
    return result(
        "B7", "time to first batch", scale,
        [figure("time to first batch (TensorFlow import excluded)", median(seconds), TARGET_SECONDS, "<=",
                unit="s")],
        raw={"seconds": seconds, "process_wall_seconds": [r["wall_seconds"] for r in runs]},
        params={"dataset": dataset, "shuffle_buffer": job["reader"]["shuffle_buffer"],
                "batch_size": job["reader"]["batch_size"]},
    )
