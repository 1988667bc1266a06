"""Read-pipeline variants side by side: records/s relative to a hand-written baseline.

Each variant builds a fresh `tf.data.Dataset` of parsed batches over one split; one
pass is consumed in C++ (`Dataset.reduce`, so the Python loop costs nothing), and the
variants take turns, repetition after repetition, so that a noisy shared machine slows
them alike; the table shows each variant's median records/s and its ratio to the
baseline's median, per mode (shuffled for training, unshuffled for evaluation).

    baseline: TFRecordDataset(files) → batch(b) → map(parse_example) → prefetch(AUTOTUNE)

Run:
    python -m benchmarks.reader_variants --flights runs/flights/dataset \\
        --digits runs/digits/dataset --reps 7

(`--flights` defaults to runs/flights/dataset; build it with `tfstream preprocess
--config configs/flights_dense.yaml --output /tmp/fl_bench/dataset` if absent.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from tfstream.pipelines.read import bucketing, reader, stages  # noqa: E402
from tfstream.pipelines.manifest import Manifest, load_manifest  # noqa: E402
from tfstream.pipelines.shards import tf_compression_type  # noqa: E402
from tfstream.transforms.codecs import parse_batch  # noqa: E402
from tfstream.transforms.schema import length_key  # noqa: E402

A = tf.data.AUTOTUNE
SEED = 1
BUFFER = 10_000


def _parse_pad(m: Manifest):
    """Parse a batch and pad its sequences to the longest, in one function."""
    seq = [f.name for f in m.schema.sequence_features]

    def densify(features, label):
        features = dict(features)
        for name in seq:
            features[name] = features[name].to_tensor()
        return features, label

    def f(serialized):
        return densify(*parse_batch(serialized, m.schema))

    f.densify = densify
    return f


def _files(m: Manifest, split: str, shuffle: bool) -> tf.data.Dataset:
    return stages.list_shards(m, split, shuffle=shuffle, seed=SEED)


def _tfrecord(m: Manifest):
    ct = tf_compression_type(m.compression)
    return lambda path: tf.data.TFRecordDataset(path, compression_type=ct)


def variants(m: Manifest, split: str, b: int, shuffle: bool) -> dict[str, Callable[[], tf.data.Dataset]]:
    """name → a function building the dataset of that variant."""
    files = m.shard_paths(split)
    ct = tf_compression_type(m.compression)
    parse = _parse_pad(m)
    rec = _tfrecord(m)
    sh = shuffle

    def opts(ds, **kw):
        o = tf.data.Options()
        for path, value in kw.items():
            target = o
            *parents, last = path.split("__")
            for p in parents:
                target = getattr(target, p)
            setattr(target, last, value)
        return ds.with_options(o)

    def records_v0(cycle=4, det=None, parse_calls=A, shuffle_batches=False):
        """The reader before this change: record interleave, record shuffle, batch, parse."""
        ds = _files(m, split, sh).interleave(rec, cycle_length=cycle if sh else 1, block_length=16,
                                              num_parallel_calls=A, deterministic=det if sh else True)
        ds = ds.apply(tf.data.experimental.assert_cardinality(m.num_examples(split)))
        if sh and not shuffle_batches:
            ds = ds.shuffle(BUFFER, seed=SEED)
        ds = ds.batch(b)
        if sh and shuffle_batches:
            ds = ds.shuffle(BUFFER // b, seed=SEED)
        return two_maps(ds, parse_calls).prefetch(A)

    def two_maps(ds, calls=A):  # parse, then pad: the old reader's two stages (parse_and_pad fuses them)
        pad = _parse_pad(m)
        return (ds.map(lambda s: parse_batch(s, m.schema), num_parallel_calls=calls)
                .map(lambda features, label: pad.densify(features, label), num_parallel_calls=calls))

    def blocks(block=128, cycle=4, window=True, det=None):
        ds = _files(m, split, sh).apply(stages.interleave_blocks(
            compression=m.compression, block_size=block, cycle_length=cycle if sh else 1,
            deterministic=det if sh else True))
        if sh and window:
            ds = ds.apply(stages.shuffle_blocks(buffer_size=BUFFER, block_size=block, seed=SEED))
        elif sh:
            ds = ds.shuffle(max(2, BUFFER // block), seed=SEED)
        return ds.rebatch(b).map(parse, num_parallel_calls=A).prefetch(A)

    v = {
        "baseline": lambda: tf.data.TFRecordDataset(files, compression_type=ct).batch(b).map(parse).prefetch(A),
        "read (new default)": lambda: reader.read(m, split, batch_size=b, shuffle=sh, seed=SEED,
                                                   shuffle_buffer=BUFFER),
        "read, seed=None": lambda: reader.read(m, split, batch_size=b, shuffle=sh, shuffle_buffer=BUFFER),
        "old read: records, shuffle 10k records": lambda: records_v0(det=True),
        "  + deterministic=False": lambda: records_v0(det=False),
        "  + sequential parse map": lambda: records_v0(det=True, parse_calls=None),
        "  shuffle batches, not records": lambda: records_v0(det=True, shuffle_batches=True),
        "TFRecordDataset(num_parallel_reads=4)": lambda: (
            (tf.data.TFRecordDataset(files, compression_type=ct, num_parallel_reads=4 if sh else None)
             .apply(lambda d: d.shuffle(BUFFER, seed=SEED) if sh else d))
            .batch(b).map(parse, num_parallel_calls=A).prefetch(A)),
        "per-shard batches interleaved (no record shuffle)": lambda: (
            _files(m, split, sh).interleave(lambda f: rec(f).batch(b), cycle_length=4 if sh else 1,
                                            num_parallel_calls=A, deterministic=True)
            .map(parse, num_parallel_calls=A).prefetch(A)),
        "blocks 32 + window shuffle": lambda: blocks(32),
        "blocks 128 + window shuffle": lambda: blocks(128),
        "blocks 512 + window shuffle": lambda: blocks(512),
        "blocks 128, block shuffle only": lambda: blocks(128, window=False),
        "blocks 128 + window, parse and pad as two maps": lambda: two_maps(
            _files(m, split, sh).apply(stages.interleave_blocks(compression=m.compression, block_size=128,
                                                                 cycle_length=4 if sh else 1))
            .apply(lambda d: d.apply(stages.shuffle_blocks(buffer_size=BUFFER, block_size=128, seed=SEED))
                   if sh else d).rebatch(b)).prefetch(A),
        "records in stored order, flat_map (unshuffled only)": lambda: (
            _files(m, split, False).flat_map(rec).batch(b).map(parse, num_parallel_calls=A).prefetch(A)),
        "blocks 128 + window, cycle 8": lambda: blocks(128, cycle=8),
        "read + map_fusion": lambda: opts(reader.read(m, split, batch_size=b, shuffle=sh, seed=SEED,
                                                       shuffle_buffer=BUFFER),
                                          experimental_optimization__map_fusion=True),
        "read, autotune off": lambda: opts(reader.read(m, split, batch_size=b, shuffle=sh, seed=SEED,
                                                        shuffle_buffer=BUFFER),
                                           autotune__enabled=False),
    }
    if sh:
        v.pop("records in stored order, flat_map (unshuffled only)")
    if not sh:  # shuffle-only variants measure the same thing as others when unshuffled
        for name in ("read, seed=None", "blocks 128 + window, parse and pad as two maps", "  + deterministic=False",
                     "  shuffle batches, not records",
                     "blocks 32 + window shuffle", "blocks 512 + window shuffle", "blocks 128, block shuffle only",
                     "blocks 128 + window, cycle 8"):
            v.pop(name)
        v["blocks 128 in stored order, rebatch"] = v.pop("blocks 128 + window shuffle")
    return v


def bucket_variants(m: Manifest, split: str, b: int, max_tokens: int) -> dict[str, Callable[[], tf.data.Dataset]]:
    """Where to find the length before bucketing (sequence data, shuffled)."""
    feature = m.schema.sequence_features[0].name
    key = length_key(feature)
    plan = bucketing.bucket_plan(m, split, feature, max_tokens_per_batch=max_tokens, max_batch_size=b)
    rec = _tfrecord(m)
    spec = m.schema.parse_spec()

    def tail(ds):  # batches of serialized records → parsed, padded to the bucket
        return ds.apply(stages.parse_and_pad(m.schema, boundaries=plan.boundaries)).prefetch(A)

    def record_shuffled():
        return (_files(m, split, True).interleave(rec, cycle_length=4, num_parallel_calls=A, deterministic=True)
                .shuffle(BUFFER, seed=SEED))

    def parse_each():
        label = m.schema.label.name

        def one(s):
            parsed = tf.io.parse_single_example(s, spec)
            y = parsed.pop(label)
            return parsed, y

        ds = record_shuffled().map(one, num_parallel_calls=A)
        return ds.apply(bucketing.bucket_by_length(plan=plan, length_key=key)).prefetch(A)

    def tf_bucket_by_sequence_length():
        label = m.schema.label.name

        def one(s):
            parsed = tf.io.parse_single_example(s, spec)
            parsed[feature] = parsed[feature].to_tensor() if isinstance(parsed[feature], tf.RaggedTensor) \
                else parsed[feature]
            y = parsed.pop(label)
            return parsed, y

        ds = record_shuffled().map(one, num_parallel_calls=A)
        return ds.bucket_by_sequence_length(
            lambda f, y: tf.cast(f[key], tf.int32), [x + 1 for x in plan.boundaries],
            list(plan.batch_sizes) + [plan.batch_sizes[-1]], pad_to_bucket_boundary=True).prefetch(A)

    return {
        "read, bucketed (blocks, lengths parsed per block)": lambda: reader.read(
            m, split, batch_size=b, seed=SEED, shuffle_buffer=BUFFER, max_tokens_per_batch=max_tokens),
        "records, length by parse_single_example": lambda: tail(
            record_shuffled().apply(bucketing.bucket_by_length(plan=plan, length_key=key))),
        "records, full parse each, bucket_by_length": parse_each,
        "records, full parse each, tf bucket_by_sequence_length": tf_bucket_by_sequence_length,
    }


def measure(builders: dict[str, Callable[[], tf.data.Dataset]], records: int, reps: int,
            passes: int = 1) -> dict[str, float]:
    """Median records/s of each variant, the variants taking turns."""
    times: dict[str, list[float]] = {name: [] for name in builders}
    count = lambda n, _: n + 1  # noqa: E731
    for name, build in builders.items():  # warm-up: tracing and file cache
        build().take(2).reduce(tf.constant(0, tf.int64), count)
    for _ in range(reps):
        for name, build in builders.items():
            ds = build()
            start = time.perf_counter()
            for _ in range(passes):
                ds.reduce(tf.constant(0, tf.int64), count)
            times[name].append(records * passes / (time.perf_counter() - start))
    return {name: statistics.median(t) for name, t in times.items()}


def table(title: str, results: dict[str, float], base: str = "baseline") -> str:
    ref = results[base]
    lines = [f"\n{title}\n", "| variant | records/s | ratio |", "|---|---:|---:|"]
    for name, rate in results.items():
        lines.append(f"| {name.strip()} | {rate:,.0f} | {rate / ref:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flights", default="runs/flights/dataset")
    ap.add_argument("--digits", default="runs/digits/dataset")
    ap.add_argument("--split", default="train")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--digits-passes", type=int, default=10, help="passes per timing (the digits split is small)")
    ap.add_argument("--only", choices=("flights", "digits"), default=None)
    ap.add_argument("--json", default=None, help="also write the medians here")
    args = ap.parse_args(argv)

    out: dict[str, dict[str, float]] = {}
    if args.only in (None, "flights"):
        m = load_manifest(args.flights)
        n = m.num_examples(args.split)
        for shuffle in (True, False):
            key = f"flights {args.split}, batch 256, shuffle={shuffle}"
            out[key] = measure(variants(m, args.split, 256, shuffle), n, args.reps)
            print(table(key, out[key]), flush=True)
    if args.only in (None, "digits"):
        m = load_manifest(args.digits)
        n = m.num_examples(args.split)
        for shuffle in (True, False):
            key = f"digits {args.split}, batch 32, shuffle={shuffle}"
            builders = variants(m, args.split, 32, shuffle)
            if shuffle:
                builders.update(bucket_variants(m, args.split, 32, max_tokens=32 * 24))
            out[key] = measure(builders, n, args.reps, passes=args.digits_passes)
            print(table(key, out[key]), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
