"""The read side: composable tf.data stages from a tfstream dataset to Keras batches.

Each stage is a pure ``Dataset -> Dataset`` function with keyword-only options, used
with ``ds.apply(...)``; `read` chains them in the order measured fastest
(benchmarks/reader_variants.py):

    shuffled (training):
        shards listed in the manifest → shuffle files → interleave blocks of records
        (parallel, one shard per block) → [cache] → shuffle blocks, permute windows
        → rebatch → parse (vectorized, whole batch) and pad sequences → prefetch
    unshuffled (evaluation, stored order):
        shards in order → records → [cache] → batch → parse and pad → prefetch
    bucketed (``max_tokens_per_batch``): as above up to the batching, then batch
        records of similar length (`bucket_by_length`) → parse and pad to the
        bucket's boundary → prefetch

Records are moved and shuffled while they are still serialized strings (cheap to hold
and move), in blocks rather than one by one: per-element overhead, not parsing,
dominates small tabular records. Batches are parsed a whole batch at a time with one
`tf.io.parse_example` call, much faster than parsing element by element. Nothing here
holds more than the shuffle buffer, the prefetch buffer and (only when asked) the cache.

Example:
    >>> ds = read("runs/flights/dataset", "train", batch_size=256, seed=1)  # doctest: +SKIP
    >>> features, label = next(iter(ds))                                    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any, Callable, Mapping, Optional, Union

import numpy as np
import tensorflow as tf

from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.shards import tf_compression_type
from tfstream.transforms.codecs import parse_batch
from tfstream.transforms.schema import Schema, length_key

AUTOTUNE = tf.data.AUTOTUNE
Stage = Callable[[tf.data.Dataset], tf.data.Dataset]

# Records per block in shuffled reads (`interleave_blocks`): large enough that tf.data's
# per-element cost is paid once per many records, small enough that the block shuffle
# buffer holds many blocks. Measured in benchmarks/reader_variants.py.
_BLOCK_SIZE = 128

_log = logging.getLogger(__name__)


def list_shards(manifest: Union[Manifest, str], split: str, *, shuffle: bool = True,
                seed: Optional[int] = None) -> tf.data.Dataset:
    """A dataset of the split's shard paths, taken from the manifest only.

    Args:
        manifest: a loaded `Manifest` or a dataset directory.
        split: the split name.
        shuffle: shuffle the file order (again each epoch).
        seed: makes the file order reproducible.
    """
    if isinstance(manifest, str):
        manifest = load_manifest(manifest)
    paths = manifest.shard_paths(split)
    files = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    if shuffle and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files


def interleave_records(*, compression: str = "none", cycle_length: int = 4, block_length: int = 16,
                       num_parallel_calls: Optional[int] = AUTOTUNE, deterministic: Optional[bool] = None,
                       buffer_size: int = 1 << 20) -> Stage:
    """Files → serialized records, reading ``cycle_length`` shards in parallel.

    Args:
        compression: ``none`` or ``gzip`` (the manifest's ``compression``).
        cycle_length, block_length, num_parallel_calls, deterministic: as in
            `tf.data.Dataset.interleave` (``num_parallel_calls=None``: sequential).
            ``deterministic=None`` follows the dataset's options (tf.data's default:
            deterministic).
        buffer_size: read buffer per file, in bytes.
    """
    compression_type = tf_compression_type(compression)

    def stage(files: tf.data.Dataset) -> tf.data.Dataset:
        return files.interleave(
            lambda path: tf.data.TFRecordDataset(path, compression_type=compression_type, buffer_size=buffer_size),
            cycle_length=cycle_length,
            block_length=block_length,
            num_parallel_calls=num_parallel_calls,
            deterministic=deterministic,
        )

    return stage


def interleave_blocks(*, compression: str = "none", block_size: int = 128, cycle_length: int = 4,
                      num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None,
                      buffer_size: int = 1 << 20) -> Stage:
    """Files → blocks: vectors of up to ``block_size`` serialized records of one shard,
    reading ``cycle_length`` shards in parallel.

    One element per block instead of one per record: with small records, tf.data's cost
    per element, not parsing, is what limits a reader (see
    benchmarks/reader_variants.py). Follow with `shuffle_blocks` and
    ``ds.rebatch(batch_size)``, or with `bucket_by_length`.

    Args:
        compression: ``none`` or ``gzip`` (the manifest's ``compression``).
        block_size: records per block (the last block of a shard may be shorter).
        cycle_length, num_parallel_calls, deterministic: as in `tf.data.Dataset.interleave`.
        buffer_size: read buffer per file, in bytes.

    Example:
        >>> m = load_manifest("runs/flights/dataset")                                # doctest: +SKIP
        >>> ds = list_shards(m, "train").apply(interleave_blocks(block_size=64))    # doctest: +SKIP
        >>> next(iter(ds)).shape                                                    # doctest: +SKIP
        TensorShape([64])
    """
    compression_type = tf_compression_type(compression)

    def stage(files: tf.data.Dataset) -> tf.data.Dataset:
        return files.interleave(
            lambda path: tf.data.TFRecordDataset(path, compression_type=compression_type,
                                                 buffer_size=buffer_size).batch(block_size),
            cycle_length=cycle_length,
            num_parallel_calls=num_parallel_calls,
            deterministic=deterministic,
        )

    return stage


def cache_records(*, cache: Optional[str]) -> Stage:
    """Cache the records after the first pass: ``"memory"``, a file path prefix, or None.

    A file cache is written completely during the first epoch and reused afterwards;
    a memory cache holds the whole split, so use it only for splits that fit.
    """

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if not cache or cache == "none":
            return ds
        if cache == "memory":
            return ds.cache()
        os.makedirs(os.path.dirname(os.path.abspath(cache)) or ".", exist_ok=True)
        return ds.cache(cache)

    return stage


def shuffle_records(*, buffer_size: int, seed: Optional[int] = None, reshuffle_each_iteration: bool = True) -> Stage:
    """Shuffle with a bounded buffer of ``buffer_size`` records (0 or 1: no shuffle)."""

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if buffer_size <= 1:
            return ds
        return ds.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=reshuffle_each_iteration)

    return stage


def shuffle_blocks(*, buffer_size: int, block_size: int, seed: Optional[int] = None,
                   reshuffle_each_iteration: bool = True, deterministic: Optional[bool] = None) -> Stage:
    """Blocks of serialized records (`interleave_blocks`) → windows of about
    ``buffer_size // 2`` records in random order, holding about ``buffer_size`` records.

    A vectorized stand-in for ``unbatch().shuffle(buffer_size)``, which pays tf.data's
    per-element cost on every record: blocks are shuffled in a buffer of about
    ``buffer_size // 2`` records, gathered into windows of ``buffer_size // 2`` records,
    and each window is permuted at once (`tf.random.experimental.stateless_shuffle`). A
    batch cut from a window is a uniform sample of it, and each epoch the windows are
    made of other blocks. This mixes as well as a record shuffle buffer because the write
    side stores every shard in a random order (``WriteShards``): a block is already a
    random sample; the read side only has to vary the batches from epoch to epoch.
    Follow with ``ds.rebatch(batch_size)`` or `bucket_by_length`. ``buffer_size`` 0 or
    1: blocks pass through unshuffled.

    Args:
        buffer_size: records held for shuffling (blocks waiting plus one window).
        block_size: the records per block of the input (sizes the block buffer).
        seed: makes the order reproducible.
        reshuffle_each_iteration: a new order each epoch.
        deterministic: as in `tf.data.Dataset.map`.

    Example:
        >>> ds = (list_shards(m, "train", seed=0)                                # doctest: +SKIP
        ...       .apply(interleave_blocks(block_size=64))
        ...       .apply(shuffle_blocks(buffer_size=10_000, block_size=64, seed=0))
        ...       .rebatch(256))
    """

    def permute(seed_pair, window):
        return tf.random.experimental.stateless_shuffle(window, seed_pair)

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if buffer_size <= 1:
            return ds
        window = max(1, buffer_size // 2)
        ds = ds.shuffle(max(2, window // block_size), seed=seed, reshuffle_each_iteration=reshuffle_each_iteration)
        ds = ds.rebatch(window)
        # One seed pair per window, from a seeded stream that is drawn again each epoch:
        # a random op with a fixed seed inside `map` would repeat the same order.
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=reshuffle_each_iteration).batch(2)
        return tf.data.Dataset.zip((seeds, ds)).map(permute, num_parallel_calls=AUTOTUNE,
                                                     deterministic=deterministic)

    return stage


def parse_records(schema: Schema, *, num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None) -> Stage:
    """Batches of serialized records → ``(features, label)``, one vectorized parse per batch.

    Apply after ``ds.batch(...)``. Sequence features come out ragged; follow with
    `pad_sequences`.
    """

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.map(lambda serialized: parse_batch(serialized, schema),
                      num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage


def pad_sequences(schema: Schema, *, boundaries: Optional[tuple[int, ...]] = None,
                  num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None) -> Stage:
    """Ragged sequence features → dense ``[batch, steps, dim]``, right-padded with zeros.

    ``steps`` is the longest sequence in the batch, or with ``boundaries`` (a
    `BucketPlan`'s) the first boundary at or above it, so that bucketed batches take at
    most ``len(boundaries)`` shapes (longer sequences than the last boundary: the longest
    in the batch). The ``<name>_length`` feature says how many steps are real, so a model
    can mask the padding (right padding keeps the fused cuDNN LSTM kernel usable).

    Example:
        >>> ds = ds.apply(parse_records(schema)).apply(pad_sequences(schema))  # doctest: +SKIP
    """
    densify = _densify_fn(schema, boundaries)

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if densify is None:
            return ds
        return ds.map(densify, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage


def _densify_fn(schema: Schema, boundaries: Optional[tuple[int, ...]]):
    """`pad_sequences`'s per-batch function; None when the schema has no sequences."""
    seq = [(f.name, f.size) for f in schema.sequence_features]
    if not seq:
        return None
    bounds = tf.constant(boundaries or (0,), tf.int64)
    ext = tf.concat([bounds, [-1]], axis=0)

    def steps(ragged):
        longest = tf.reduce_max(tf.concat([[0], tf.cast(ragged.row_lengths(), tf.int64)], axis=0))
        if not boundaries:
            return longest
        i = tf.searchsorted(bounds, tf.reshape(longest, [1]), side="left")[0]
        return tf.where(i < len(boundaries), ext[i], longest)

    def densify(features, label):
        features = dict(features)
        for name, dim in seq:
            ragged = features[name]
            features[name] = ragged.to_tensor(shape=tf.stack([tf.constant(-1, tf.int64), steps(ragged),
                                                              tf.constant(dim, tf.int64)]))
        return features, label

    return densify


def prefetch(*, buffer_size: int = AUTOTUNE) -> Stage:
    """Overlap the input pipeline with training: keep ``buffer_size`` batches ready."""

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.prefetch(buffer_size) if buffer_size != 0 else ds

    return stage


# ----------------------------------------------------------------------- bucketing


@dataclasses.dataclass(frozen=True)
class BucketPlan:
    """How `bucket_by_length` batches sequences by length; made by `bucket_plan`.

    Attributes:
        boundaries: increasing lengths, each the longest a bucket holds: a sequence of
            length ``L`` goes to the first bucket ``i`` with ``L <= boundaries[i]`` and
            is padded to ``boundaries[i]`` steps. (tf.data's
            `tf.data.Dataset.bucket_by_sequence_length` counts the other way: its
            boundaries are exclusive, ``boundaries[i] + 1`` here.) A sequence longer
            than the last boundary (one the statistics never saw) goes to an extra
            bucket with the last bucket's batch size, padded to its batch's longest.
        batch_sizes: records per batch, one per bucket.
        padding_efficiency: the expected real ÷ padded time steps over the split when
            every sequence is padded to its bucket's boundary (1.0: no padding).
        counts: sequences per bucket in the split the plan was made from (empty when
            not known), which fix the number of batches of one pass.

    Example:
        >>> plan = BucketPlan(boundaries=(10, 20), batch_sizes=(64, 32), padding_efficiency=0.8,
        ...                   counts=(100, 50))
        >>> plan.num_batches()
        4
    """

    boundaries: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    padding_efficiency: float
    counts: tuple[int, ...] = ()

    def num_batches(self, drop_remainder: bool = False) -> Optional[int]:
        """Batches in one pass over the planned split (None without ``counts``): every
        bucket holds the same sequences each epoch, whatever the shuffle."""
        if not self.counts:
            return None
        if drop_remainder:
            return sum(n // b for n, b in zip(self.counts, self.batch_sizes))
        return sum(-(-n // b) for n, b in zip(self.counts, self.batch_sizes))


def bucket_plan(manifest: Union[Manifest, str, Mapping[str, Any]], split: str, feature: str, *,
                max_tokens_per_batch: int, num_buckets: int = 8,
                max_batch_size: Optional[int] = None) -> BucketPlan:
    """Bucket boundaries and batch sizes from the manifest's sequence-length statistics.

    The boundaries are the ``num_buckets`` lengths (the last one the longest length)
    that pad least: chosen exactly, by dynamic programming over the split's length
    histogram (``{"<length>": count}``), minimizing the padded steps of an epoch. (Equal-
    count buckets, from the length quantiles, pad much more on a long tail: their last
    bucket spans from a high quantile to the longest sequence.) Each bucket's batch
    size is ``max(1, max_tokens_per_batch // boundary)``, at most ``max_batch_size``, so
    a padded batch holds about the same number of steps whatever its bucket.

    Args:
        manifest: a loaded `Manifest`, a dataset directory, or a manifest's content.
        split: the split whose statistics to use (the split that will be read).
        feature: a sequence feature.
        max_tokens_per_batch: padded time steps per batch (batch size × padded length).
        num_buckets: buckets wanted (fewer when quantiles coincide).
        max_batch_size: caps every bucket's batch size (None: no cap).

    Raises:
        ValueError: a bad argument, a feature that is not a sequence, or a split without
            sequences.

    Example:
        >>> plan = bucket_plan("runs/digits/dataset", "train", "mfcc", max_tokens_per_batch=1024,
        ...                    num_buckets=4)                                     # doctest: +SKIP
        >>> plan.boundaries, plan.batch_sizes                                     # doctest: +SKIP
        ((14, 17, 21, 92), (73, 60, 48, 11))
    """
    if max_tokens_per_batch < 1:
        raise ValueError(f"max_tokens_per_batch: expected >= 1, got {max_tokens_per_batch}")
    if num_buckets < 1:
        raise ValueError(f"num_buckets: expected >= 1, got {num_buckets}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size: expected None or >= 1, got {max_batch_size}")
    if isinstance(manifest, str):
        manifest = load_manifest(manifest)
    elif not isinstance(manifest, Manifest):
        manifest = Manifest(manifest, "<manifest>")
    kind = {f.name: f.kind for f in manifest.schema.features}.get(feature)
    if kind != "sequence":
        sequences = [f.name for f in manifest.schema.sequence_features]
        raise ValueError(f"feature {feature!r}: only a sequence feature can be bucketed by length; "
                         f"the dataset's sequence features are {sequences}")
    stats = manifest.statistics(split).get("features", {}).get(feature, {}).get("length", {})
    hist = {int(k): int(v) for k, v in stats.get("histogram", {}).items() if int(v) > 0}
    if not hist:
        raise ValueError(f"{manifest.root}: split {split!r} has no {feature!r} sequences (or no length "
                         f"histogram in its statistics): nothing to bucket; re-run `tfstream preprocess` "
                         f"if the split should hold some")
    lengths = np.array(sorted(hist))
    counts = np.array([hist[n] for n in lengths])
    boundaries = _least_padding_boundaries(lengths, counts, num_buckets)
    sizes = tuple(max(1, max_tokens_per_batch // b) for b in boundaries)
    if max_batch_size is not None:
        sizes = tuple(min(s, max_batch_size) for s in sizes)
    bucket = np.searchsorted(boundaries, lengths, side="left")
    padded_to = np.array(boundaries)[bucket]
    efficiency = float((lengths * counts).sum() / (padded_to * counts).sum())
    per_bucket = tuple(int(c) for c in np.bincount(bucket, weights=counts, minlength=len(boundaries)))
    if max_tokens_per_batch < boundaries[-1]:
        _log.warning(
            "max_tokens_per_batch=%d is less than the longest %r sequence (%d steps): batches of the "
            "longest bucket hold one sequence and more than max_tokens_per_batch steps; raise it to at "
            "least %d", max_tokens_per_batch, feature, boundaries[-1], boundaries[-1])
    return BucketPlan(boundaries, sizes, efficiency, per_bucket)


def _least_padding_boundaries(lengths: np.ndarray, counts: np.ndarray, num_buckets: int) -> tuple[int, ...]:
    """The at most ``num_buckets`` boundaries, among the distinct ``lengths`` (sorted),
    that minimize ``sum(count of a length × the boundary it is padded to)``; the last
    boundary is the longest length. Dynamic programming, O(buckets × lengths²) with
    NumPy rows: milliseconds for the ~90 distinct lengths of digits, about a quarter of
    a second for 1,500 distinct lengths and 16 buckets."""
    m = len(lengths)
    k = min(num_buckets, m)
    before = np.concatenate([[0], np.cumsum(counts)])  # before[i]: sequences shorter than lengths[i]
    # best[j]: least padded steps for lengths[0..j] with the buckets used so far,
    # the last boundary at lengths[j]; start[b][j]: where that last bucket starts
    best = lengths * before[1:]  # one bucket
    starts = [np.zeros(m, dtype=int)]
    for _ in range(1, k):
        new = best.copy()
        start = np.zeros(m, dtype=int)
        for j in range(1, m):
            # a last bucket lengths[i..j], after the best split of lengths[0..i-1]
            cost = best[:j] + lengths[j] * (before[j + 1] - before[1:j + 1])
            i = int(np.argmin(cost))
            if cost[i] < new[j]:
                new[j], start[j] = cost[i], i + 1
        best = new
        starts.append(start)
    out, j = [], m - 1
    for start in reversed(starts):
        out.append(int(lengths[j]))
        if start[j] == 0:
            break
        j = start[j] - 1
    return tuple(sorted(out))


def _element_length(element, key: str):
    """The sequence length of a parsed element: ``(features, label)`` or a features dict."""
    features = element[0] if isinstance(element, tuple) else element
    return features[key]


def bucket_by_length(*, plan: BucketPlan, length_key: str, pad_to_bucket: bool = True,
                     drop_remainder: bool = False) -> Stage:
    """Batch records by sequence length, following ``plan`` (see `BucketPlan`).

    Takes either serialized records (one string per element, or vectors of them as
    `interleave_blocks` and `shuffle_blocks` make), or parsed records (``(features,
    label)`` or a features dict, sequences dense ``[steps, dim]``; ragged ones are
    densified). Records of a bucket are batched in the order they come.

    * Serialized records come out as batches of serialized records, to parse with
      `parse_records` and pad with ``pad_sequences(schema, boundaries=plan.boundaries)``
      (which pads to the bucket's boundary; leave ``boundaries`` out for
      ``pad_to_bucket=False``). Only ``length_key`` is parsed before batching, a whole
      vector at a time when the input is blocks: the full parse stays vectorized, one
      call per batch (parsing every record alone, then padding, measured slower).
    * Parsed records come out padded (right, zeros): to the bucket's boundary with
      ``pad_to_bucket`` (so batches take at most ``len(plan.boundaries)`` shapes, plus
      one for sequences longer than the last boundary), else to the longest in the batch.

    Args:
        plan: boundaries and batch sizes, from `bucket_plan`.
        length_key: the ``<name>_length`` key of the sequence feature to bucket by.
        pad_to_bucket: pad parsed records to the bucket's boundary.
        drop_remainder: drop each bucket's last, smaller batch.

    Example:
        >>> plan = bucket_plan(m, "train", "mfcc", max_tokens_per_batch=2048)    # doctest: +SKIP
        >>> ds = (list_shards(m, "train").apply(interleave_records())          # doctest: +SKIP
        ...       .apply(bucket_by_length(plan=plan, length_key="mfcc_length"))
        ...       .apply(parse_records(m.schema))
        ...       .apply(pad_sequences(m.schema, boundaries=plan.boundaries)))
    """
    boundaries = tf.constant(plan.boundaries, tf.int64)
    sizes = tf.constant(plan.batch_sizes + plan.batch_sizes[-1:], tf.int64)  # + the overflow bucket
    pad_to = tf.constant(plan.boundaries + (-1,), tf.int64)  # -1: the longest in the batch
    length_spec = {length_key: tf.io.FixedLenFeature([], tf.int64)}

    def bucket(length):
        return tf.cast(tf.searchsorted(boundaries, tf.reshape(length, [1]), side="left")[0], tf.int64)

    def window_size(key):
        return sizes[key]

    def serialized_stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if ds.element_spec.shape.rank == 0:
            ds = ds.map(lambda s: (s, tf.io.parse_single_example(s, length_spec)[length_key]),
                        num_parallel_calls=AUTOTUNE)
        else:  # blocks: one vectorized parse of the lengths per block
            ds = ds.map(lambda s: (s, tf.io.parse_example(s, length_spec)[length_key]),
                        num_parallel_calls=AUTOTUNE).unbatch()
        ds = ds.group_by_window(
            key_func=lambda s, n: bucket(n),
            reduce_func=lambda key, w: w.batch(sizes[key], drop_remainder=drop_remainder),
            window_size_func=window_size,
        )
        return ds.map(lambda s, n: s)

    def parsed_stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if any(isinstance(spec, tf.RaggedTensorSpec) for spec in tf.nest.flatten(ds.element_spec)):
            ds = ds.map(lambda *e: tf.nest.map_structure(
                lambda t: t.to_tensor() if isinstance(t, tf.RaggedTensor) else t, e if len(e) > 1 else e[0]))

        def batch(key, window):
            def shape(spec):
                dims = [pad_to[key] if (d is None and pad_to_bucket) else tf.constant(-1 if d is None else d, tf.int64)
                        for d in spec.shape]
                return tf.stack(dims) if dims else tf.zeros([0], tf.int64)

            shapes = tf.nest.map_structure(shape, window.element_spec)
            return window.padded_batch(sizes[key], padded_shapes=shapes, drop_remainder=drop_remainder)

        return ds.group_by_window(
            key_func=lambda *e: bucket(_element_length(e if len(e) > 1 else e[0], length_key)),
            reduce_func=batch,
            window_size_func=window_size,
        )

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        spec = ds.element_spec
        if isinstance(spec, tf.TensorSpec) and spec.dtype == tf.string:
            return serialized_stage(ds)
        return parsed_stage(ds)

    return stage


class PaddingCounter:
    """Real and padded time steps of the sequence batches a reader produced (see
    `count_padding`): ``efficiency()`` is real ÷ padded since the last ``reset()``.

    The counters are CPU variables: tf.data runs on the CPU, and cannot update a
    variable placed on an accelerator.

    Example:
        >>> counter = PaddingCounter()
        >>> counter.efficiency() is None
        True
    """

    def __init__(self):
        with tf.device("/CPU:0"):
            self.real = tf.Variable(0, dtype=tf.int64, trainable=False, name="real_steps")
            self.padded = tf.Variable(0, dtype=tf.int64, trainable=False, name="padded_steps")

    def reset(self) -> None:
        self.real.assign(0)
        self.padded.assign(0)

    def efficiency(self) -> Optional[float]:
        """Real ÷ padded steps counted, or None before any."""
        padded = int(self.padded.numpy())
        return int(self.real.numpy()) / padded if padded else None


def count_padding(counter: PaddingCounter, schema: Schema) -> Stage:
    """Add each padded batch's real steps (the ``<name>_length`` values) and padded steps
    (batch × steps) of every sequence feature to ``counter``; the batches pass unchanged.

    Apply after `pad_sequences` and before `prefetch`. A finite dataset's iteration (one
    Keras epoch) is counted exactly: every batch made is consumed. With ``repeat`` the
    prefetched batches of the next epoch are counted early.

    Example:
        >>> counter = PaddingCounter()
        >>> ds = ds.apply(count_padding(counter, schema))      # doctest: +SKIP
    """
    names = [f.name for f in schema.sequence_features]

    def count(features, label):
        real = tf.add_n([tf.reduce_sum(features[length_key(n)]) for n in names])
        padded = tf.add_n([tf.reduce_prod(tf.shape(features[n], out_type=tf.int64)[:2]) for n in names])
        counter.real.assign_add(real)
        counter.padded.assign_add(padded)
        return features, label

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if not names:
            return ds
        # Sequential: a few additions per batch are not worth a thread pool.
        return ds.map(count)

    return stage


def _warn_on_memory_cache(manifest: Manifest, split: str) -> None:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    size = manifest.split_bytes(split)
    if size > total // 4:
        _log.warning(
            "cache='memory' on split %r holds %.0f MB of records, over a quarter of this machine's "
            "%.0f MB of memory; use a file cache (cache='/path/prefix') or no cache",
            split, size / 2**20, total / 2**20,
        )


def read(
    dataset_dir: Union[str, Manifest],
    split: str,
    *,
    batch_size: int = 256,
    shuffle: bool = True,
    shuffle_buffer: int = 10_000,
    cache: Optional[str] = None,
    cycle_length: int = 4,
    seed: Optional[int] = None,
    drop_remainder: bool = False,
    prefetch_buffer: int = AUTOTUNE,
    repeat: bool = False,
    max_tokens_per_batch: Optional[int] = None,
    num_buckets: int = 8,
    ram_budget_mb: Optional[int] = None,
    padding_counter: Optional[PaddingCounter] = None,
) -> tf.data.Dataset:
    """Stream one split of a tfstream dataset as batches of ``(features, label)``.

    Args:
        dataset_dir: the dataset directory (or its loaded `Manifest`).
        split: a split named in the manifest (``train``, ``eval``, ...).
        batch_size: records per batch; with bucketing, the most records per batch.
        shuffle: shuffle files and records (turn off for evaluation).
        shuffle_buffer: records held for shuffling (see `shuffle_blocks`).
        cache: ``None``, ``"memory"`` or a file path prefix; see `cache_records`. The
            cache files are named ``<prefix>.<split>.<digest of the split's shards>.<layout>``
            (shuffled reads cache blocks of records, unshuffled reads records).
        cycle_length: shards read in parallel (1 when ``shuffle=False``).
        seed: makes file order, interleaving and shuffling reproducible. Without a
            seed (and with shuffling on), interleave and map may reorder elements for
            speed; with ``shuffle=False`` the order is always the stored order.
        drop_remainder: drop the last, smaller batch (with bucketing: of each bucket).
        prefetch_buffer: batches prefetched (AUTOTUNE by default).
        repeat: repeat forever (then give Keras `steps_per_epoch`).
        max_tokens_per_batch: bucket sequences by length (see `bucket_plan`, planned on
            this split's statistics, bucketing the first sequence feature): each bucket's
            batches hold about this many padded steps, capped at ``batch_size`` records,
            padded to the bucket's boundary. Batches are then not in the stored order
            even without shuffling (records of one bucket keep their order). Ignored,
            with a warning, for a dataset without sequences.
        num_buckets: buckets wanted, with ``max_tokens_per_batch``.
        ram_budget_mb: the most memory tf.data's autotuner may give buffers
            (``options.autotune.ram_budget``); None: tf.data's default (half the RAM).
        padding_counter: count real and padded sequence steps of the batches made (see
            `count_padding`), for a padding-efficiency metric.

    Returns:
        A `tf.data.Dataset` of ``(features, label)``; features is a dict keyed by feature
        name, with a ``<name>_length`` entry per sequence feature.

    Example:
        >>> ds = read("runs/digits/dataset", "train", batch_size=32, seed=0)  # doctest: +SKIP
        >>> features, label = next(iter(ds))                                  # doctest: +SKIP
        >>> features["mfcc"].shape                                            # doctest: +SKIP
        TensorShape([32, 71, 13])
        >>> ds = read("runs/digits/dataset", "train", max_tokens_per_batch=1024)  # doctest: +SKIP
    """
    manifest = dataset_dir if isinstance(dataset_dir, Manifest) else load_manifest(dataset_dir)
    schema = manifest.schema
    n = manifest.num_examples(split)
    if ram_budget_mb is not None and ram_budget_mb < 1:
        raise ValueError(f"ram_budget_mb: expected None or >= 1, got {ram_budget_mb}")
    plan, bucket_key = None, None
    if max_tokens_per_batch is not None:
        if not schema.sequence_features:
            _log.warning("max_tokens_per_batch=%d is ignored: the dataset %r has no sequence feature to bucket "
                         "by length; batches hold batch_size=%d records", max_tokens_per_batch, manifest.name,
                         batch_size)
        elif n:
            feature = schema.sequence_features[0].name
            plan = bucket_plan(manifest, split, feature, max_tokens_per_batch=max_tokens_per_batch,
                               num_buckets=num_buckets, max_batch_size=batch_size)
            bucket_key = length_key(feature)
    # Shuffled reads move blocks of records, unshuffled reads single records: a cache
    # file holds one layout, so the layout is part of its name.
    block_size = _BLOCK_SIZE
    if cache and cache not in ("memory", "none"):
        # tf.data reuses an existing cache file as it is: name it after the split and its
        # shards' checksums, so a rewritten dataset never reads a stale cache.
        layout = f"blocks{block_size}" if shuffle else "records"
        cache = f"{cache}.{split}.{manifest.split_digest(split)[:16]}.{layout}"
    # Unshuffled reads keep the stored order (predictions line up with records); seeded
    # reads are reproducible; otherwise tf.data may reorder for speed.
    deterministic = True if (seed is not None or not shuffle) else None
    if cache == "memory":
        _warn_on_memory_cache(manifest, split)

    files = list_shards(manifest, split, shuffle=shuffle, seed=seed)
    if shuffle:
        # Blocks, not records, from here to the batches: see the module docstring.
        ds = files.apply(interleave_blocks(compression=manifest.compression, block_size=block_size,
                                           cycle_length=cycle_length, deterministic=deterministic))
        ds = ds.apply(cache_records(cache=cache))
        ds = ds.apply(shuffle_blocks(buffer_size=shuffle_buffer, block_size=block_size, seed=seed,
                                     deterministic=deterministic))
    else:
        # One shard after the other, so the order is the stored order: TFRecordDataset
        # over the listed paths, measured faster than an interleave of cycle_length 1.
        ds = tf.data.TFRecordDataset(files, compression_type=tf_compression_type(manifest.compression),
                                     buffer_size=1 << 20)
        # The manifest knows the record count: declaring it fails loudly if the shards
        # do not hold what the manifest says (and gives Keras a step count, below).
        ds = ds.apply(tf.data.experimental.assert_cardinality(n))
        ds = ds.apply(cache_records(cache=cache))
    if repeat:
        ds = ds.repeat()
    if plan is not None:
        ds = ds.apply(bucket_by_length(plan=plan, length_key=bucket_key, drop_remainder=drop_remainder))
        if not repeat and sum(plan.counts) == n:
            # Each bucket holds the same sequences every epoch, so the batch count is
            # known: Keras gets its step count (without it, Keras 3 warns that the
            # input "ran out of data" after the first epoch).
            ds = ds.apply(tf.data.experimental.assert_cardinality(plan.num_batches(drop_remainder)))
    elif shuffle:
        ds = ds.rebatch(batch_size, drop_remainder=drop_remainder)
        if not repeat:
            # Blocks hide the record count; the batch count still tells Keras the steps
            # and catches shards that hold a batch more or less than the manifest says.
            ds = ds.apply(tf.data.experimental.assert_cardinality(
                n // batch_size if drop_remainder else -(-n // batch_size)))
    else:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    # Parse and pad in one function: one map (one per-element hop) fewer per batch.
    densify = _densify_fn(schema, plan.boundaries if plan is not None else None)

    def parse(serialized):
        parsed = parse_batch(serialized, schema)
        return densify(*parsed) if densify is not None else parsed

    ds = ds.map(parse, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    if padding_counter is not None:
        ds = ds.apply(count_padding(padding_counter, schema))
    ds = ds.apply(prefetch(buffer_size=prefetch_buffer))
    options = tf.data.Options()
    if not deterministic:
        options.deterministic = False
    if ram_budget_mb is not None:
        options.autotune.ram_budget = int(ram_budget_mb) << 20
    return ds.with_options(options)
