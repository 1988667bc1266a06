"""B3 streaming vs the seed's approaches, on the same data (the flights training split):
training throughput and peak RSS of

* ``arrays``: NumPy arrays in memory passed to ``fit(x, y, batch_size=B)`` (Keras
  shuffles them each epoch);
* ``pydataset``: a ``keras.utils.PyDataset`` generator slicing those arrays, one batch
  per ``__getitem__`` (single worker, no shuffling, string columns turned into tensors
  per batch, since Keras refuses NumPy string arrays from a PyDataset);
* ``tfstream``: `read` with the trainer's settings (the job's reader section).

The arrays are the training split's records decoded once (`data.split_arrays`), so all
three see exactly the same rows; string columns are object arrays, as pandas holds them.

Every variant runs in a fresh process (peak RSS is that process's VmHWM, TensorFlow
included; a smoke run stays in its own process): it builds the same model (same seed),
loads its input, and fits ``epochs`` epochs of the whole split; throughput is records ÷
the median epoch time of the epochs after the first (tracing and warm-up excluded).
Variants alternate within every repetition; figures are medians of per-repetition ratios.
"""

from __future__ import annotations

from benchmarks import data
from benchmarks.common import (alternate, epoch_timer, figure, fresh_processes, import_tensorflow_quietly, median, pick,
                               reps, result, run_child)

VARIANTS = ("arrays", "pydataset", "tfstream")
TARGET_VS_ARRAYS = 0.9
TARGET_VS_PYDATASET = 1.0


def _in_memory(dataset: str):
    x, y = data.split_arrays(dataset, "train")
    return {k: (v.astype(object) if v.dtype.kind == "U" else v) for k, v in x.items()}, y


def _pydataset(x, y, batch_size: int):
    import keras
    import tensorflow as tf

    class ArraySequence(keras.utils.PyDataset):
        """The seed's generator: batches sliced from arrays in memory."""

        def __init__(self):
            super().__init__()

        def __len__(self):
            return -(-len(y) // batch_size)

        def __getitem__(self, i):
            s = slice(i * batch_size, (i + 1) * batch_size)
            return {k: (tf.constant(v[s].tolist()) if v.dtype == object else v[s]) for k, v in x.items()}, y[s]

    return ArraySequence()


def child(args: dict) -> dict:
    """One variant in this (fresh) process."""
    import_tensorflow_quietly()
    import keras

    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.training.models import build_model

    config = config_from_dict(args["job"])
    manifest = load_manifest(args["dataset"])
    keras.utils.set_random_seed(config.train.seed)
    model = build_model(manifest, config)
    batch_size, epochs, variant = config.reader.batch_size, args["epochs"], args["variant"]
    timer = epoch_timer()
    if variant == "tfstream":
        model.fit(read(manifest, "train", config.reader), epochs=epochs, verbose=0, callbacks=[timer])
    else:
        x, y = _in_memory(args["dataset"])
        if variant == "arrays":
            model.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=0, callbacks=[timer])
        else:
            model.fit(_pydataset(x, y, batch_size), epochs=epochs, verbose=0, callbacks=[timer])
    records = manifest.num_examples("train")
    return {"records": records, "epoch_seconds": timer.seconds,
            "records_per_second": records / median(timer.seconds[1:])}


def run(scale: str, workdir: str) -> dict:
    job = data.flights_job(workdir, scale)
    dataset = data.flights_dataset(workdir, scale)
    data.split_arrays(dataset, "train")  # decoded once, here, not in the measured processes
    epochs = pick(scale, smoke=2, full=3)
    fresh = fresh_processes(scale)
    runs = alternate({v: (lambda v=v: run_child("b3_streaming:child", {"variant": v, "job": job, "dataset": dataset,
                                                                          "epochs": epochs}, fresh=fresh))
                      for v in VARIANTS}, reps(scale, smoke=1))
    rate = {v: [r["records_per_second"] for r in runs[v]] for v in VARIANTS}
    rss = {v: [r["peak_rss_mb"] for r in runs[v]] for v in VARIANTS}
    vs_arrays = [t / a for t, a in zip(rate["tfstream"], rate["arrays"])]
    vs_pydataset = [t / p for t, p in zip(rate["tfstream"], rate["pydataset"])]
    return result(
        "B3", "streaming vs the seed's approaches", scale,
        [figure("throughput tfstream ÷ arrays in memory", median(vs_arrays), TARGET_VS_ARRAYS, ">="),
         figure("throughput tfstream ÷ PyDataset generator", median(vs_pydataset), TARGET_VS_PYDATASET, ">")],
        raw={"records_per_second": rate, "peak_rss_mb": rss, "epoch_seconds": {v: [r["epoch_seconds"] for r in runs[v]]
                                                                                for v in VARIANTS},
             "ratio_vs_arrays": vs_arrays, "ratio_vs_pydataset": vs_pydataset},
        values={"records_per_second_median": {v: median(rate[v]) for v in VARIANTS},
                "peak_rss_mb_median": {v: median(rss[v]) for v in VARIANTS}},
        params={"dataset": dataset, "records": runs["tfstream"][0]["records"], "epochs": epochs,
                "batch_size": job["reader"]["batch_size"]},
        notes=["peak RSS includes TensorFlow and Keras (the same in every variant)"],
    )
