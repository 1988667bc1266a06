"""The read side's stages: pure ``Dataset -> Dataset`` functions with keyword-only options.

Each stage is used with ``ds.apply(stage)``, on its own or in a pipeline of your own;
`reader.read` composes them (with `bucketing.bucket_by_length`) in the order measured
fastest (benchmarks/reader_variants.py):

    shuffled (training):
        list_shards (shuffled) → interleave_blocks → [cache_records] → shuffle_blocks
        → rebatch → parse_and_pad → [count_padding] → prefetch
    unshuffled (evaluation, stored order):
        list_shards → read_shards → [cache_records] → batch → parse_and_pad → prefetch
    bucketed (``max_tokens_per_batch``): as above up to the batching, then
        bucket_by_length → parse_and_pad (to the bucket's boundary) → ...
    through a tf.data service (``reader.service``): everything up to parse_and_pad
        runs on the service's workers, then distribute_to_service → [rebatch]
        → [count_padding] → prefetch in this process

Records are moved and shuffled while they are still serialized strings (cheap to hold
and move), in blocks rather than one by one: per-element overhead, not parsing,
dominates small tabular records. Batches are parsed a whole batch at a time with one
`tf.io.parse_example` call, much faster than parsing element by element. Nothing here
holds more than the shuffle buffer, the prefetch buffer and (only when asked) the cache.

Example:
    >>> manifest = load_manifest(dataset_dir)
    >>> ds = (list_shards(manifest, "eval", shuffle=False)
    ...       .apply(read_shards(compression=manifest.compression))
    ...       .batch(32)
    ...       .apply(parse_and_pad(manifest.schema))
    ...       .apply(prefetch()))
    >>> features, label = next(iter(ds))
    >>> int(label.shape[0])
    32
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Optional, Sequence, Union

import tensorflow as tf

from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.shards import tf_compression_type
from tfstream.transforms.codecs import parse_batch
from tfstream.transforms.label_scaling import LabelScaling
from tfstream.transforms.schema import Schema, length_key

AUTOTUNE = tf.data.AUTOTUNE
Stage = Callable[[tf.data.Dataset], tf.data.Dataset]

# Records per block in shuffled reads (`interleave_blocks`): large enough that tf.data's
# per-element cost is paid once per many records, small enough that the block shuffle
# buffer holds many blocks. Measured in benchmarks/reader_variants.py.
BLOCK_SIZE = 128


def list_shards(manifest: Union[Manifest, str], split: str, *, shuffle: bool = True,
                seed: Optional[int] = None, paths: Optional[Sequence[str]] = None) -> tf.data.Dataset:
    """A dataset of the split's shard paths, taken from the manifest only.

    Args:
        manifest: a loaded `Manifest` or a dataset directory.
        split: the split name.
        shuffle: shuffle the file order (again each epoch).
        seed: makes the file order reproducible.
        paths: some of the split's shard paths, to list instead of all of them (one
            process's part: `processes.ProcessShard`).
    """
    if isinstance(manifest, str):
        manifest = load_manifest(manifest)
    paths = manifest.shard_paths(split) if paths is None else list(paths)
    files = tf.data.Dataset.from_tensor_slices(tf.constant(paths, dtype=tf.string))
    if shuffle and len(paths) > 1:
        files = files.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    return files


def read_shards(*, compression: str = "none", buffer_size: int = 1 << 20) -> Stage:
    """Files → serialized records, one shard after the other: the stored order.

    One `tf.data.TFRecordDataset` over the listed paths, measured faster than an
    interleave with ``cycle_length=1``.

    Args:
        compression: ``none`` or ``gzip`` (the manifest's ``compression``).
        buffer_size: read buffer, in bytes.
    """
    compression_type = tf_compression_type(compression)

    def stage(files: tf.data.Dataset) -> tf.data.Dataset:
        return tf.data.TFRecordDataset(files, compression_type=compression_type, buffer_size=buffer_size)

    return stage


def interleave_blocks(*, compression: str = "none", block_size: int = BLOCK_SIZE, cycle_length: int = 4,
                      num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None,
                      buffer_size: int = 1 << 20, records: Optional[Mapping[str, int]] = None) -> Stage:
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
        records: the record count of each listed file, by path (`shard_records`): each
            shard is then checked to hold exactly that many records as it is read (an
            `InvalidArgumentError` naming the file, see `SHARD_COUNT_MESSAGE`). The check
            costs a comparison per block, not per record.

    Example:
        >>> m = load_manifest(dataset_dir)
        >>> ds = list_shards(m, "train").apply(interleave_blocks(compression=m.compression, block_size=64,
        ...                                                      records=shard_records(m, "train")))
        >>> next(iter(ds)).shape
        TensorShape([64])
    """
    compression_type = tf_compression_type(compression)
    counts = None
    if records is not None:
        counts = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(records), tf.string), tf.constant(list(records.values()), tf.int64)), default_value=-1)

    def blocks(path):
        ds = tf.data.TFRecordDataset(path, compression_type=compression_type, buffer_size=buffer_size)
        ds = ds.batch(block_size)
        return ds if counts is None else ds.apply(_check_count(path, counts.lookup(path), block_size))

    def stage(files: tf.data.Dataset) -> tf.data.Dataset:
        return files.interleave(
            blocks,
            cycle_length=cycle_length,
            num_parallel_calls=num_parallel_calls,
            deterministic=deterministic,
        )

    return stage


# The start of the error a shard with other records than its manifest entry raises while
# it is read (`interleave_blocks` with ``records``); the file's path follows in brackets.
SHARD_COUNT_MESSAGE = "tfstream: the records of the shard"


def shard_records(manifest: Manifest, split: str) -> dict[str, int]:
    """The split's record count of each shard, by path (``records`` of `interleave_blocks`)."""
    paths = manifest.shard_paths(split, check=False)
    return {path: shard.records for path, shard in zip(paths, manifest.split(split).shards)}


def _check_count(path: tf.Tensor, expected: tf.Tensor, block_size: int) -> Stage:
    """The blocks of one shard, checked against its record count: every block full but
    the last, which holds the rest. Counted per block (a record-level count costs a
    tf.data hop per record); the number of blocks is asserted too, which catches whole
    blocks missing at the end (that error does not name the file)."""
    size = tf.constant(block_size, tf.int64)

    def check(i, block):
        want = tf.minimum(size, expected - i * size)
        got = tf.size(block, out_type=tf.int64)
        ok = tf.debugging.Assert(tf.equal(got, want), [
            SHARD_COUNT_MESSAGE, path, "differ from its manifest entry: it lists", expected,
            "records; after record", i * size, "the shard holds a block of", got, "records, not", want])
        with tf.control_dependencies([ok]):
            return tf.identity(block)

    def stage(blocks: tf.data.Dataset) -> tf.data.Dataset:
        blocks = blocks.apply(tf.data.experimental.assert_cardinality((expected + size - 1) // size))
        return blocks.enumerate().map(check)

    return stage


def cache_records(*, cache: Optional[str]) -> Stage:
    """Cache the records after the first pass: ``"memory"``, a file path prefix, or
    ``"none"`` (or None): no cache.

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
        >>> m = load_manifest(dataset_dir)
        >>> ds = (list_shards(m, "train", seed=0)
        ...       .apply(interleave_blocks(compression=m.compression, block_size=64))
        ...       .apply(shuffle_blocks(buffer_size=10_000, block_size=64, seed=0))
        ...       .rebatch(256))
        >>> next(iter(ds)).shape
        TensorShape([256])
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


def parse_and_pad(schema: Schema, *, boundaries: Optional[tuple[int, ...]] = None,
                  label_scaling: Optional[LabelScaling] = None, num_parallel_calls: int = AUTOTUNE,
                  deterministic: Optional[bool] = None) -> Stage:
    """Batches of serialized records → ``(features, label)``: one vectorized
    `tf.io.parse_example` per batch, sequence features right-padded with zeros to a
    dense ``[batch, steps, dim]``, and a regression label scaled as the model learns it
    (``label_scaling``), in one map (one per-element hop fewer per batch).

    ``steps`` is the longest sequence in the batch, or with ``boundaries`` (a
    `bucketing.BucketPlan`'s) the first boundary at or above it, so that bucketed batches
    take at most ``len(boundaries)`` shapes (a sequence longer than the last boundary:
    the longest in the batch). The ``<name>_length`` feature says how many steps are
    real, so a model can mask the padding (right padding keeps the fused cuDNN LSTM
    kernel usable).

    Args:
        schema: the dataset's schema (`Manifest.schema`).
        boundaries: pad sequences to these bucket boundaries.
        label_scaling: the label's transform and standardization
            (`Manifest.label_scaling`); None or an identity: the label as stored.
        num_parallel_calls, deterministic: as in `tf.data.Dataset.map`.
    """
    densify = _densify_fn(schema, boundaries)
    scale = None if label_scaling is None or label_scaling.is_identity else _scale_fn(label_scaling)

    def parse(serialized):
        parsed = parse_batch(serialized, schema)
        if scale is not None:
            parsed = (parsed[0], scale(parsed[1]))
        return densify(*parsed) if densify is not None else parsed

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.map(parse, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage


def _scale_fn(scaling: LabelScaling):
    """`LabelScaling.apply` in TensorFlow (float32)."""
    mean, std = tf.constant(scaling.mean, tf.float32), tf.constant(scaling.std, tf.float32)

    def scale(label):
        label = tf.cast(label, tf.float32)
        if scaling.transform == "log1p":
            label = tf.math.log1p(label)
        return (label - mean) / std

    return scale


def _densify_fn(schema: Schema, boundaries: Optional[tuple[int, ...]]):
    """`parse_and_pad`'s padding of one parsed batch; None when the schema has no sequences."""
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


def distribute_to_service(*, dispatcher: str, processing_mode: str = "distributed_epoch",
                          job_name: Optional[str] = None) -> Stage:
    """Run the pipeline so far on the workers of a tf.data service and receive its
    elements here (`tf.data.experimental.service.distribute`).

    The pipeline is serialized to the dispatcher, and each worker runs it: with
    ``distributed_epoch`` on the splits of its first source (for `read`, the shard
    paths of `list_shards`: each worker reads whole shards, each shard is read once per
    epoch); with ``parallel_epochs`` on all of it (each worker yields the whole
    dataset). Stateful per-process work, such as `count_padding`'s variables, must come
    after this stage. The result's cardinality is unknown, and its order
    nondeterministic.

    Args:
        dispatcher: ``grpc://HOST:PORT``.
        processing_mode: ``distributed_epoch`` or ``parallel_epochs``.
        job_name: consumers with the same name share one job (None: a job of its own).
    """

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.apply(tf.data.experimental.service.distribute(
            processing_mode=processing_mode, service=dispatcher, job_name=job_name))

    return stage


def prefetch(*, buffer_size: int = AUTOTUNE) -> Stage:
    """Overlap the input pipeline with training: keep ``buffer_size`` batches ready."""

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.prefetch(buffer_size) if buffer_size != 0 else ds

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

    Apply after `parse_and_pad` and before `prefetch`. A finite dataset's iteration (one
    Keras epoch) is counted exactly: every batch made is consumed. With ``repeat`` the
    prefetched batches of the next epoch are counted early.

    Example:
        >>> m = load_manifest(sequence_dataset_dir)
        >>> counter = PaddingCounter()
        >>> ds = (list_shards(m, "eval", shuffle=False).apply(read_shards(compression=m.compression)).batch(16)
        ...       .apply(parse_and_pad(m.schema)).apply(count_padding(counter, m.schema)))
        >>> _ = list(ds)
        >>> 0 < counter.efficiency() < 1
        True
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


