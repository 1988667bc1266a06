"""B6 preprocessing: rows/s of `preprocess` on the DirectRunner ÷ a single-process Python
loop writing the same Examples with ``tf.io.TFRecordWriter``, on one table.

The table: the flights of 2013 repeated to ``rows`` rows (1,000,000 at full scale), one
plain CSV, with the flights job (``configs/flights_dense.yaml``; 8 training shards).

* ``loop``: reads the CSV with the same chunked reader (`sources.read_chunks`), validates
  and types each row with the same rules (`validation.convert_row`), skips the rows
  those rules drop, encodes with `codecs.encode_example` and writes every record to one
  file with ``tf.io.TFRecordWriter``. No split, statistics, shuffling or quarantine.
* ``beam_in_memory``: ``preprocess(config, out)`` on the DirectRunner's default
  in-memory mode: the whole job (validation, split, full-pass statistics and
  vocabularies, write-time shuffle, sharded write, quarantine, manifest, publish).
* ``beam_multiprocessing``: the same with ``--direct_running_mode=multi_processing
  --direct_num_workers=2`` (worker start-up included).

rows/s = the table's rows ÷ the wall time of the call (TensorFlow and Beam already
imported). Each run writes to a fresh directory, removed afterwards. The three alternate
within every repetition; figures are medians of per-repetition ratios.
"""

from __future__ import annotations

import os

from benchmarks import data
from benchmarks.common import alternate, figure, import_tensorflow_quietly, median, pick, reps, result
from benchmarks.common import rows_per_second

TARGETS = {"beam_in_memory": 0.5, "beam_multiprocessing": 1.0}
MULTIPROCESSING = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]


def python_loop(config, path: str, out: str) -> int:
    """The baseline: one process, one loop, one TFRecordWriter. Returns records written."""
    import tensorflow as tf

    from tfstream.pipelines.write.sources import read_chunks
    from tfstream.transforms.codecs import encode_example
    from tfstream.transforms.validation import NOTES, convert_row

    rules, schema, columns = config.row_rules(), config.schema(), config.source_columns()
    written = 0
    with tf.io.TFRecordWriter(out) as writer:
        for _, _, chunk in read_chunks(path, source=config.source, columns=columns):
            values = [chunk[c] for c in columns]
            for row_values in zip(*values):
                row, _dropped = convert_row(dict(zip(columns, row_values)), rules)
                if row is None:
                    continue
                row.pop(NOTES, None)
                writer.write(encode_example(row, schema))
                written += 1
    return written


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    from tfstream.pipelines.write.beam_pipeline import preprocess
    from tfstream.pipelines.config import config_from_dict

    rows = pick(scale, smoke=2_000, full=1_000_000)
    table = data.flights_table_csv(workdir, scale, rows)
    job = data.job_dict("flights_dense.yaml", source={"path": table})
    config = config_from_dict(job)
    scratch = os.path.join(data.cache_dir(workdir, scale), "b6-scratch")
    os.makedirs(scratch, exist_ok=True)
    written = {}

    timed = rows_per_second(scratch, rows, written)

    beam_quiet = ["--default_sdk_harness_log_level=WARNING"]
    variants = {
        "loop": lambda: timed("loop", lambda out: python_loop(config, table, os.path.join(out, "records.tfrecord"))),
        "beam_in_memory": lambda: timed("beam_in_memory", lambda out: sum(
            preprocess(config, output_dir=out, beam_args=beam_quiet).num_examples(s) for s in config.split.fractions)),
        "beam_multiprocessing": lambda: timed("beam_multiprocessing", lambda out: sum(
            preprocess(config, output_dir=out, beam_args=MULTIPROCESSING + beam_quiet).num_examples(s)
            for s in config.split.fractions)),
    }
    raw = alternate(variants, reps(scale, smoke=1))
    ratios = {name: [b / loop for b, loop in zip(raw[name], raw["loop"])] for name in TARGETS}
    if len(set(written.values())) != 1:
        raise RuntimeError(f"B6: the variants wrote different numbers of records: {written}")
    return result(
        "B6", "preprocessing throughput", scale,
        [figure("preprocess (DirectRunner, in memory) ÷ Python loop, rows/s", median(ratios["beam_in_memory"]),
                TARGETS["beam_in_memory"], ">="),
         figure("preprocess (DirectRunner, multi_processing ×2) ÷ Python loop, rows/s",
                median(ratios["beam_multiprocessing"]), TARGETS["beam_multiprocessing"], ">=")],
        raw={"rows_per_second": raw, "ratio": ratios},
        values={"rows_per_second_median": {k: median(v) for k, v in raw.items()}, "records_written": written},
        params={"rows": rows, "table": table, "cpus": os.cpu_count()},
    )
