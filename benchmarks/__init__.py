"""tfstream's benchmarks (issue 4): every figure a ratio measured side by side in one run.

Run them with ``tfstream bench [--scale smoke|full] [--only B1,B3] [--workdir DIR]
[--out DIR]`` from a source checkout (this package is not part of tfstream's wheel).
One module per benchmark, each with ``run(scale, workdir) -> dict``:

    B1 b1_reader        read() ÷ a hand-written tf.data pipeline, records/s
    B2 b2_overhead      fit step time, tfstream input ÷ an in-memory synthetic batch
    B3 b3_streaming     throughput and peak RSS: arrays in memory, PyDataset, tfstream
    B4 b4_memory        peak RSS of `tfstream train` on N and 10·N rows, vs arrays
    B5 b5_padding       bucketed vs plain padded sequences: efficiency, epoch time, shapes
    B6 b6_preprocess    preprocess rows/s (DirectRunner, DaskRunner) ÷ a single-process Python loop
    B7 b7_first_batch   time to the first batch, TensorFlow's import excluded
    B8 b8_preprocess_scaling  peak RSS and rows/s of `tfstream preprocess` on N and 10·N rows
    B9 b9_data_service  fit step time with the input on a tf.data service worker ÷ synthetic
    B10 b10_write_arrays  write_arrays rows/s ÷ a hand-written TFRecordWriter loop

``smoke`` runs every benchmark on tiny data in seconds (the test suite does); ``full``
uses the issue's sizes. Shared helpers: `common` (repetitions, figures, processes and
peak RSS), `data` (datasets built once into ``<workdir>/cache``), `report` (JSON,
plots, table), `suite` (runs a selection).
"""

from benchmarks.common import SCALES, BenchmarkSkipped
from benchmarks.suite import BENCHMARKS, run_one, run_suite

__all__ = ["BENCHMARKS", "SCALES", "BenchmarkSkipped", "run_one", "run_suite"]
