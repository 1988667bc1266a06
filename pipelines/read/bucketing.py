"""Sequence bucketing: batches of sequences of similar length, padded to few shapes.

`bucket_plan` chooses bucket boundaries and per-bucket batch sizes from the manifest's
length histogram (the boundaries that pad least, by dynamic programming), and
`bucket_by_length` is the ``Dataset -> Dataset`` stage that batches records by bucket.
`reader.read` uses both when ``ReadOptions.max_tokens_per_batch`` is set.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional, Union

import numpy as np
import tensorflow as tf

from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.read.stages import AUTOTUNE, Stage

_log = logging.getLogger(__name__)

# Buckets when none are asked for (`ReadOptions.num_buckets` left out).
DEFAULT_NUM_BUCKETS = 8


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


def bucket_plan(manifest: Union[Manifest, str], split: str, feature: str, *,
                max_tokens_per_batch: int, num_buckets: int = DEFAULT_NUM_BUCKETS,
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
        manifest: a loaded `Manifest`, or a dataset directory.
        split: the split whose statistics to use (the split that will be read).
        feature: a sequence feature.
        max_tokens_per_batch: padded time steps per batch (batch size × padded length).
        num_buckets: buckets wanted (fewer when quantiles coincide).
        max_batch_size: caps every bucket's batch size (None: no cap).

    Raises:
        ValueError: a bad argument, a feature that is not a sequence, or a split without
            sequences.

    Example:
        >>> plan = bucket_plan(sequence_dataset_dir, "train", "mfcc", max_tokens_per_batch=1024,
        ...                    num_buckets=4)
        >>> len(plan.boundaries), plan.boundaries[-1] == load_manifest(sequence_dataset_dir).split(
        ...     "train").statistics("mfcc").length.max
        (4, True)
    """
    if max_tokens_per_batch < 1:
        raise ValueError(f"max_tokens_per_batch: expected >= 1, got {max_tokens_per_batch}")
    if num_buckets < 1:
        raise ValueError(f"num_buckets: expected >= 1, got {num_buckets}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size: expected None or >= 1, got {max_batch_size}")
    if isinstance(manifest, str):
        manifest = load_manifest(manifest)
    kind = {f.name: f.kind for f in manifest.features}.get(feature)
    if kind != "sequence":
        sequences = [f.name for f in manifest.schema.sequence_features]
        raise ValueError(f"feature {feature!r}: only a sequence feature can be bucketed by length; "
                         f"the dataset's sequence features are {sequences}")
    stats = manifest.split(split).features.get(feature)
    hist = {n: c for n, c in stats.length.histogram.items() if c > 0} if stats is not None else {}
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

    * Serialized records come out as batches of serialized records, to parse and pad
      with ``stages.parse_and_pad(schema, boundaries=plan.boundaries)`` (which pads to
      the bucket's boundary; leave ``boundaries`` out for ``pad_to_bucket=False``). Only ``length_key`` is parsed before batching, a whole
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
        >>> from tfstream.pipelines.read.stages import list_shards, parse_and_pad, read_shards
        >>> m = load_manifest(sequence_dataset_dir)
        >>> plan = bucket_plan(m, "train", "mfcc", max_tokens_per_batch=2048)
        >>> ds = (list_shards(m, "train").apply(read_shards(compression=m.compression))
        ...       .apply(bucket_by_length(plan=plan, length_key="mfcc_length"))
        ...       .apply(parse_and_pad(m.schema, boundaries=plan.boundaries)))
        >>> features, _ = next(iter(ds))
        >>> int(features["mfcc"].shape[1]) in plan.boundaries
        True
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

