"""B1 reader efficiency: records/s of tfstream's `read` ÷ a hand-written best-practice
tf.data pipeline, on the same shards (the flights training split), in one process.

The hand-written pipeline is the issue's: ``TFRecordDataset(files) → batch(B) →
map(parse_example) → prefetch(AUTOTUNE)`` (batch before parse: one vectorized parse
per batch), with the same parse spec and batch size, no shuffling; it is also the
baseline of ``benchmarks/reader_variants.py``. A stronger hand-written variant, with
the tf.data guide's parallelism (``num_parallel_reads=AUTOTUNE`` and
``num_parallel_calls=AUTOTUNE``), is measured too and its ratio reported as a value.
tfstream's side is ``read(dataset, "train", batch_size=B)`` with its defaults (shuffled,
unseeded), which is what a user writes; the trainer's call (the job's reader settings,
seeded hence deterministic) is reported as a value.

Each measurement builds the dataset, then consumes the whole split ``passes`` times
with ``Dataset.reduce`` (in C++, as Keras's train step pulls batches, so no Python loop
dilutes the difference); one warm-up pass of each variant comes first (page cache,
graph building). The variants alternate within every repetition; the figure is the
median of the per-repetition ratios.
"""

from __future__ import annotations

from benchmarks import data
from benchmarks.common import (Timer, alternate, figure, import_tensorflow_quietly, median, pick, reps,
                               result)

TARGET = 1.2


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    import tensorflow as tf

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.pipelines.shards import tf_compression_type

    job = data.flights_job(workdir, scale)
    dataset = data.flights_dataset(workdir, scale)
    config = config_from_dict(job)
    manifest = load_manifest(dataset)
    records = manifest.num_examples("train")
    batch_size = config.reader.batch_size
    files = manifest.shard_paths("train")
    spec = manifest.schema.parse_spec()
    compression = tf_compression_type(manifest.compression)
    passes = pick(scale, smoke=1, full=5)
    autotune = tf.data.AUTOTUNE

    def hand_written(parallel: bool):
        ds = tf.data.TFRecordDataset(files, compression_type=compression,
                                     num_parallel_reads=autotune if parallel else None)
        ds = ds.batch(batch_size)
        ds = ds.map(lambda serialized: tf.io.parse_example(serialized, spec),
                    num_parallel_calls=autotune if parallel else None)
        return ds.prefetch(autotune)

    makers = {
        "hand_written": lambda: hand_written(False),
        "hand_written_parallel": lambda: hand_written(True),
        "read": lambda: read(dataset, "train", batch_size=batch_size),
        "read_job_settings": lambda: read(manifest, "train", config.reader),
    }

    def measure(make):
        ds = make()
        zero = tf.constant(0, tf.int64)
        with Timer() as t:
            for _ in range(passes):
                ds.reduce(zero, lambda n, _batch: n + 1)
        return records * passes / t.seconds

    for make in makers.values():  # warm-up, not recorded
        measure(make)
    raw = alternate({name: (lambda make=make: measure(make)) for name, make in makers.items()},
                    reps(scale, full=7))
    ratio = [r / b for r, b in zip(raw["read"], raw["hand_written"])]
    ratio_job = [r / b for r, b in zip(raw["read_job_settings"], raw["hand_written"])]
    ratio_parallel = [r / b for r, b in zip(raw["read"], raw["hand_written_parallel"])]
    return result(
        "B1", "reader efficiency", scale,
        [figure("read ÷ hand-written pipeline, records/s", median(ratio), TARGET, ">=",
                what="read() with its defaults vs TFRecordDataset→batch→map(parse_example)→prefetch")],
        raw={"records_per_second": raw, "ratio": ratio, "ratio_job_settings": ratio_job,
             "ratio_vs_parallel": ratio_parallel},
        values={"records_per_second_median": {k: median(v) for k, v in raw.items()},
                "read_job_settings ÷ hand-written": median(ratio_job),
                "read ÷ hand-written with parallel reads and parse": median(ratio_parallel)},
        params={"dataset": dataset, "records": records, "batch_size": batch_size, "shards": len(files),
                "passes": passes, "reader_job_settings": config.reader.model_dump()},
        notes=["the hand-written pipeline does not shuffle; read() shuffles (bounded buffer) and interleaves shards"],
    )
