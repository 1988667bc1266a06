"""B2 input overhead: Keras `fit` step time with tfstream's input ÷ with an in-memory
synthetic input, for the Dense job (flights) and the LSTM job (digits).

Method, per job, in one process:

* one model (`build_model` from the manifest, the job's learning rate), used for both
  inputs, so both run the same traced train step;
* tfstream's input: `read` of the training split with the trainer's settings (the job's
  reader section, and for the LSTM the padding counter the trainer adds), ``repeat=True``
  and ``drop_remainder=True`` (every batch the job's batch size), no bucketing;
* the synthetic input: ``Dataset.from_tensors(batch).repeat()`` where ``batch`` is one
  real batch of that stream. For the LSTM, whose step time grows with the padded length,
  it is the batch whose padded length is closest to the mean padded length over one
  epoch of the stream;
* a measurement is one ``fit(epochs=2, steps_per_epoch=S)``: the first epoch is a
  warm-up (tracing, iterator start, shuffle buffer fill) and is discarded, the step time
  is the second epoch's wall time ÷ S (a Keras callback times the epochs);
* the two inputs alternate, repetition after repetition; the figure is the median of the
  per-repetition ratios.
"""

from __future__ import annotations

import numpy as np

from benchmarks import data
from benchmarks.common import (alternate, epoch_timer, figure, import_tensorflow_quietly, median, pick,
                               reps, result)

TARGETS = {"dense": 1.10, "lstm": 1.05}


def _representative_batch(stream_one_epoch, feature: str):
    """The batch whose padded length is closest to the mean padded length of an epoch."""
    batches = list(stream_one_epoch)
    lengths = np.array([int(b[0][feature].shape[1]) for b in batches])
    i = int(np.argmin(np.abs(lengths - lengths.mean())))
    return batches[i], lengths


def _overhead(job: dict, dataset: str, steps: int, repetitions: int) -> dict:
    import keras
    import tensorflow as tf

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.pipelines.read.stages import PaddingCounter
    from tfstream.training.models import build_model

    config = config_from_dict(job)
    manifest = load_manifest(dataset)
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(manifest, config)
    options = dict(options=config.reader, drop_remainder=True, max_tokens_per_batch=None, num_buckets=None)
    sequences = manifest.schema.sequence_features
    counting = {"padding_counter": PaddingCounter()} if sequences else {}  # as the trainer reads a sequence job
    stream = read(manifest, "train", repeat=True, **options, **counting)
    extra = {}
    if sequences:
        once = read(manifest, "train", **options)
        batch, lengths = _representative_batch(once, sequences[0].name)
        extra = {"padded_lengths_mean": float(lengths.mean()),
                 "synthetic_padded_length": int(batch[0][sequences[0].name].shape[1])}
    else:
        batch = next(iter(stream))
    synthetic = tf.data.Dataset.from_tensors(batch).repeat()

    def step_seconds(ds):
        timer = epoch_timer()
        model.fit(ds, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[timer])
        return timer.seconds[-1] / steps

    raw = alternate({"tfstream": lambda: step_seconds(stream), "synthetic": lambda: step_seconds(synthetic)},
                    repetitions)
    ratio = [a / b for a, b in zip(raw["tfstream"], raw["synthetic"])]
    return {"step_seconds": raw, "ratio": ratio, "steps": steps, "batch_size": config.reader.batch_size,
            "reader": dict(options["options"].model_dump(), max_tokens_per_batch=None, num_buckets=None,
                                                 drop_remainder=True, repeat=True, padding_counter=bool(counting)), "dataset": dataset, **extra}


def run(scale: str, workdir: str) -> dict:
    import_tensorflow_quietly()
    n = reps(scale, full=7)
    dense = _overhead(data.flights_job(workdir, scale), data.flights_dataset(workdir, scale),
                      pick(scale, smoke=8, full=1000), n)
    lstm = _overhead(data.digits_job(workdir, scale), data.digits_dataset(workdir, scale),
                     pick(scale, smoke=4, full=300), n)
    figures = [
        figure("Dense (flights): step time tfstream ÷ synthetic", median(dense["ratio"]), TARGETS["dense"], "<="),
        figure("LSTM (digits): step time tfstream ÷ synthetic", median(lstm["ratio"]), TARGETS["lstm"], "<="),
    ]
    return result(
        "B2", "input overhead", scale, figures,
        raw={"dense": dense, "lstm": lstm},
        values={f"{job} step ms median ({name})": 1000 * median(r["step_seconds"][name])
                for job, r in (("dense", dense), ("lstm", lstm)) for name in ("tfstream", "synthetic")},
        params={"repetitions": n, "warmup": "first epoch of every fit discarded"},
    )
