"""B10 write_arrays: rows/s of `write_arrays` ÷ a hand-written ``tf.io.TFRecordWriter``
loop that builds one ``tf.train.Example`` per row, on the seed article's arrays.

The arrays: X (rows, 10) float32 uniform in [0, 1), y (rows,) int64 in {0, 1}
(1,000,000 rows at full scale), in memory; the job is ``configs/seed_dense.yaml``.

* ``loop``: ``for i in range(rows)``: ``tf.train.Example`` with a FloatList of ``X[i]``
  and an Int64List of ``int(y[i])``, ``SerializeToString``, ``writer.write`` into one
  file. No validation, split, statistics, shuffling or manifest.
* ``write_arrays``: ``write_arrays(config, {"X": X, "y": y}, out)``: the whole job
  (validation, split, full-pass statistics, sharded write sorted by the keyed hash,
  manifest, publish).

rows/s = rows ÷ the wall time of the call (TensorFlow and Beam already imported, and
each variant run once, untimed, on 1,000 rows first). Each
run writes to a fresh directory, removed afterwards. The two alternate within every
repetition; the figure is the median of per-repetition ratios.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from benchmarks import data
from benchmarks.common import alternate, figure, import_tensorflow_quietly, median, pick, reps, result
from benchmarks.common import records_written, rows_per_second

TARGET = 5.0


def tfrecord_loop(X: np.ndarray, y: np.ndarray, path: str) -> int:
    """The baseline: one ``tf.train.Example`` per row, one TFRecordWriter."""
    import tensorflow as tf

    with tf.io.TFRecordWriter(path) as writer:
        for i in range(X.shape[0]):
            example = tf.train.Example(features=tf.train.Features(feature={
                "x": tf.train.Feature(float_list=tf.train.FloatList(value=X[i])),
                "y": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(y[i])])),
            }))
            writer.write(example.SerializeToString())
    return int(X.shape[0])


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write.arrays import write_arrays

    rows = pick(scale, smoke=2_000, full=1_000_000)
    rng = np.random.default_rng(0)
    X = rng.random((rows, 10), dtype=np.float32)
    y = rng.integers(0, 2, rows)
    config = config_from_dict(data.job_dict("seed_dense.yaml"))
    scratch = os.path.join(data.cache_dir(workdir, scale), "b10-scratch")
    os.makedirs(scratch, exist_ok=True)
    written = {}

    timed = rows_per_second(scratch, rows, written)

    variants = {
        "loop": lambda: timed("loop", lambda out: tfrecord_loop(X, y, os.path.join(out, "records.tfrecord"))),
        "write_arrays": lambda: timed("write_arrays", lambda out: records_written(
            write_arrays(config, {"X": X, "y": y}, out))),
    }
    # Warm-up, untimed: each variant once on 1,000 rows, so that neither pays for first
    # imports (Beam's file systems, protobuf's classes) inside a timed call.
    warm = tempfile.mkdtemp(prefix="warm-up-", dir=scratch)
    try:
        tfrecord_loop(X[:1000], y[:1000], os.path.join(warm, "records.tfrecord"))
        write_arrays(config, {"X": X[:1000], "y": y[:1000]}, os.path.join(warm, "dataset"))
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    raw = alternate(variants, reps(scale, smoke=1))
    ratios = [w / loop for w, loop in zip(raw["write_arrays"], raw["loop"])]
    if len(set(written.values())) != 1:
        raise RuntimeError(f"B10: the variants wrote different numbers of records: {written}")
    return result(
        "B10", "write_arrays throughput", scale,
        [figure("write_arrays ÷ hand-written TFRecordWriter loop, rows/s", median(ratios), TARGET, ">=")],
        raw={"rows_per_second": raw, "ratio": ratios},
        values={"rows_per_second_median": {k: median(v) for k, v in raw.items()}, "records_written": written},
        params={"rows": rows, "shape": [rows, 10], "cpus": os.cpu_count()},
    )
