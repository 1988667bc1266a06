"""B5 padding efficiency: sequences bucketed by length vs plain padded batches, on digits
and on the long-tailed gene families (truncated at ``max_length``).

Readers (training split, the job's reader settings):

* ``plain``: ``read(...)``: batches of the job's batch size B, each padded to its
  longest sequence (tf.data's ``padded_batch``);
* ``bucketed``: ``read(..., max_tokens_per_batch=B × longest, num_buckets=8,
  batch_size=8·B)``: buckets planned from the split's length statistics, every batch
  padded to its bucket's boundary and holding about ``max_tokens_per_batch`` padded
  steps, so the longest bucket's batches are B sequences (the plain batch: no batch
  is larger in memory than the plain reader's largest), shorter buckets hold more
  (at most 8·B).

Measured:

* padding efficiency: real ÷ padded time steps over one epoch of the stream (the lengths
  from ``<name>_length``; padded = batch × padded steps), for both readers; the planned
  efficiency of `bucket_plan` is reported beside it;
* distinct padded shapes: the distinct padded lengths (time dimension) of the bucketed
  stream over one epoch; what a graph compiler that specializes on shapes (XLA, cuDNN
  plans) compiles once each. Target: at most buckets + 2. Keras's own traces of the train
  step are counted too (a value): Keras traces on the iterator's element spec, whose
  time dimension is unknown, so it traces once whatever the shapes;
* on genes: LSTM epoch time (the job's model; one model per reader, same seed) with the
  bucketed reader ÷ the plain one, one epoch per measurement after a warm-up epoch each,
  alternating.
"""

from __future__ import annotations

import numpy as np

from benchmarks import data
from benchmarks.common import (alternate, epoch_timer, figure, import_tensorflow_quietly, median, pick,
                               reps, result)

NUM_BUCKETS = 8
MAX_BATCH_FACTOR = 8
TARGET_EFFICIENCY = 0.85
TARGET_TIME_RATIO = 0.5
EXTRA_SHAPES = 2


def genes_max_length(scale: str) -> int:
    return pick(scale, smoke=400, full=1500)


def _longest(manifest, split: str, feature: str) -> int:
    hist = manifest.split(split).statistics(feature).length.histogram
    return max(int(k) for k, v in hist.items() if int(v) > 0)


def _readers(manifest, config):
    from tfstream.pipelines.config import replace

    feature = manifest.schema.sequence_features[0].name
    batch_size = config.reader.batch_size
    max_tokens = batch_size * _longest(manifest, "train", feature)
    plain = replace(config.reader, max_tokens_per_batch=None, num_buckets=None)
    bucketed = replace(config.reader, max_tokens_per_batch=max_tokens, num_buckets=NUM_BUCKETS,
                       batch_size=MAX_BATCH_FACTOR * batch_size)
    return feature, plain, bucketed


def _epoch_stats(ds, feature: str) -> dict:
    """Real and padded steps, and the padded shapes, over one epoch of ``ds``."""
    from tfstream.transforms.schema import length_key

    real = padded = batches = 0
    shapes, lengths = set(), set()
    for features, _ in ds:
        shape = tuple(int(d) for d in features[feature].shape)
        real += int(np.sum(features[length_key(feature)].numpy()))
        padded += shape[0] * shape[1]
        shapes.add(shape[:2])
        lengths.add(shape[1])
        batches += 1
    return {"efficiency": real / padded, "real_steps": real, "padded_steps": padded, "batches": batches,
            "distinct_shapes": len(shapes), "distinct_padded_lengths": len(lengths)}


def _padding(job: dict, dataset: str) -> dict:
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.bucketing import bucket_plan
    from tfstream.pipelines.read.reader import read

    config = config_from_dict(job)
    manifest = load_manifest(dataset)
    feature, plain, bucketed = _readers(manifest, config)
    plan = bucket_plan(manifest, "train", feature, max_tokens_per_batch=bucketed.max_tokens_per_batch,
                       num_buckets=NUM_BUCKETS, max_batch_size=bucketed.batch_size)
    return {"dataset": dataset, "feature": feature,
            "plain": _epoch_stats(read(manifest, "train", plain), feature),
            "bucketed": _epoch_stats(read(manifest, "train", bucketed), feature),
            "plan": {"boundaries": list(plan.boundaries), "batch_sizes": list(plan.batch_sizes),
                     "padding_efficiency": plan.padding_efficiency},
            "buckets": len(plan.boundaries), "reader_plain": plain.model_dump(), "reader_bucketed": bucketed.model_dump()}


def _epoch_times(job: dict, dataset: str, repetitions: int) -> dict:
    import keras

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.training.models import build_model

    config = config_from_dict(job)
    manifest = load_manifest(dataset)
    _, plain, bucketed = _readers(manifest, config)
    setups, traces = {}, {}
    for name, options in (("plain", plain), ("bucketed", bucketed)):
        keras.utils.set_random_seed(config.train.seed)
        model = build_model(manifest, config)
        traces[name] = []
        step = model.train_step

        def counted(batch, step=step, seen=traces[name]):
            seen.append(1)  # Python runs here only while TensorFlow traces the step
            return step(batch)

        model.train_step = counted
        setups[name] = (model, read(manifest, "train", options))

    def epoch(name):
        model, ds = setups[name]
        timer = epoch_timer()
        model.fit(ds, epochs=1, verbose=0, callbacks=[timer])
        return timer.seconds[0]

    warmup = {name: epoch(name) for name in setups}  # tracing, memory cache fill
    raw = alternate({name: (lambda name=name: epoch(name)) for name in setups}, repetitions)
    ratio = [b / p for b, p in zip(raw["bucketed"], raw["plain"])]
    return {"epoch_seconds": raw, "warmup_epoch_seconds": warmup, "ratio": ratio,
            "train_step_traces": {k: len(v) for k, v in traces.items()}}


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    max_length = genes_max_length(scale)
    digits = _padding(data.digits_job(workdir, scale), data.digits_dataset(workdir, scale))
    genes_job = data.genes_job(workdir, scale, max_length)
    genes_dataset = data.genes_dataset(workdir, scale, max_length)
    genes = _padding(genes_job, genes_dataset)
    times = _epoch_times(genes_job, genes_dataset, reps(scale))
    figures = [
        figure("digits: padding efficiency, bucketed", digits["bucketed"]["efficiency"], TARGET_EFFICIENCY, ">="),
        figure("genes: padding efficiency, bucketed", genes["bucketed"]["efficiency"], TARGET_EFFICIENCY, ">="),
        figure("genes: LSTM epoch time bucketed ÷ plain padded", median(times["ratio"]), TARGET_TIME_RATIO, "<="),
        figure("digits: distinct padded shapes, bucketed", digits["bucketed"]["distinct_padded_lengths"],
               digits["buckets"] + EXTRA_SHAPES, "<=", unit="count", what=f"target: buckets ({digits['buckets']}) + 2"),
        figure("genes: distinct padded shapes, bucketed", genes["bucketed"]["distinct_padded_lengths"],
               genes["buckets"] + EXTRA_SHAPES, "<=", unit="count", what=f"target: buckets ({genes['buckets']}) + 2"),
    ]
    return result(
        "B5", "padding efficiency", scale, figures,
        raw={"digits": digits, "genes": genes, "genes_epoch_times": times},
        values={"padding efficiency, plain (digits)": digits["plain"]["efficiency"],
                "padding efficiency, plain (genes)": genes["plain"]["efficiency"],
                "padding efficiency, planned (digits)": digits["plan"]["padding_efficiency"],
                "padding efficiency, planned (genes)": genes["plan"]["padding_efficiency"],
                "genes epoch seconds median": {k: median(v) for k, v in times["epoch_seconds"].items()},
                "Keras train-step traces (genes)": times["train_step_traces"],
                "distinct (batch, steps) shapes, bucketed": {"digits": digits["bucketed"]["distinct_shapes"],
                                                             "genes": genes["bucketed"]["distinct_shapes"]}},
        params={"genes_max_length": max_length, "num_buckets": NUM_BUCKETS,
                "max_tokens_per_batch": "batch_size × longest sequence of the split",
                "bucketed_batch_size_cap": f"{MAX_BATCH_FACTOR} × batch_size"},
        notes=["genes: gene_families.npz, bases one-hot (dim 4, N = zeros), truncated at max_length "
               f"{max_length} (on_too_long: truncate), 7 families"],
        plots={"padding": {name: {"plain": r["plain"]["efficiency"], "bucketed": r["bucketed"]["efficiency"]}
                           for name, r in (("digits", digits), ("genes", genes))},
               "genes_epoch_seconds": {k: median(v) for k, v in times["epoch_seconds"].items()}},
    )
