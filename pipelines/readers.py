"""The read side: composable tf.data stages from a tfstream dataset to Keras batches.

Each stage is a pure ``Dataset -> Dataset`` function with keyword-only options, used
with ``ds.apply(...)``; `read` chains them in the recommended order:

    shards listed in the manifest → shuffle files → interleave (parallel) → [cache]
    → shuffle records (bounded buffer) → batch → parse (vectorized, whole batch)
    → pad sequences (right padding) → prefetch

Records are shuffled while they are still serialized strings (cheap to hold and move),
and parsed a whole batch at a time with one `tf.io.parse_example` call, which is much
faster than parsing element by element. Nothing here holds more than the shuffle buffer,
the prefetch buffer and (only when asked) the cache.

Example:
    >>> ds = read("runs/flights/dataset", "train", batch_size=256, seed=1)  # doctest: +SKIP
    >>> features, label = next(iter(ds))                                    # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from typing import Callable, Optional, Union

import tensorflow as tf

from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.shards import tf_compression_type
from tfstream.transforms.codecs import parse_batch
from tfstream.transforms.schema import Schema

AUTOTUNE = tf.data.AUTOTUNE
Stage = Callable[[tf.data.Dataset], tf.data.Dataset]

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
                       num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None,
                       buffer_size: int = 1 << 20) -> Stage:
    """Files → serialized records, reading ``cycle_length`` shards in parallel.

    Args:
        compression: ``none`` or ``gzip`` (the manifest's ``compression``).
        cycle_length, block_length, num_parallel_calls, deterministic: as in
            `tf.data.Dataset.interleave`. ``deterministic=None`` follows the dataset's
            options (tf.data's default: deterministic).
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


def parse_records(schema: Schema, *, num_parallel_calls: int = AUTOTUNE, deterministic: Optional[bool] = None) -> Stage:
    """Batches of serialized records → ``(features, label)``, one vectorized parse per batch.

    Apply after ``ds.batch(...)``. Sequence features come out ragged; follow with
    `pad_sequences`.
    """

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.map(lambda serialized: parse_batch(serialized, schema),
                      num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage


def pad_sequences(schema: Schema, *, num_parallel_calls: int = AUTOTUNE,
                  deterministic: Optional[bool] = None) -> Stage:
    """Ragged sequence features → dense ``[batch, max_steps_in_batch, dim]``, right-padded
    with zeros. The ``<name>_length`` feature says how many steps are real, so a model
    can mask the padding (right padding keeps the fused cuDNN LSTM kernel usable)."""
    names = [f.name for f in schema.sequence_features]

    def densify(features, label):
        features = dict(features)
        for name in names:
            features[name] = features[name].to_tensor()
        return features, label

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        if not names:
            return ds
        return ds.map(densify, num_parallel_calls=num_parallel_calls, deterministic=deterministic)

    return stage


def prefetch(*, buffer_size: int = AUTOTUNE) -> Stage:
    """Overlap the input pipeline with training: keep ``buffer_size`` batches ready."""

    def stage(ds: tf.data.Dataset) -> tf.data.Dataset:
        return ds.prefetch(buffer_size) if buffer_size != 0 else ds

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
) -> tf.data.Dataset:
    """Stream one split of a tfstream dataset as batches of ``(features, label)``.

    Args:
        dataset_dir: the dataset directory (or its loaded `Manifest`).
        split: a split named in the manifest (``train``, ``eval``, ...).
        batch_size: records per batch.
        shuffle: shuffle files and records (turn off for evaluation).
        shuffle_buffer: records held by the shuffle buffer.
        cache: ``None``, ``"memory"`` or a file path prefix; see `cache_records`. The
            cache files are named ``<prefix>.<split>.<digest of the split's shards>``.
        cycle_length: shards read in parallel (1 when ``shuffle=False``).
        seed: makes file order, interleaving and shuffling reproducible. Without a
            seed (and with shuffling on), interleave and map may reorder elements for
            speed; with ``shuffle=False`` the order is always the stored order.
        drop_remainder: drop the last, smaller batch.
        prefetch_buffer: batches prefetched (AUTOTUNE by default).
        repeat: repeat forever (then give Keras `steps_per_epoch`).

    Returns:
        A `tf.data.Dataset` of ``(features, label)``; features is a dict keyed by feature
        name, with a ``<name>_length`` entry per sequence feature.

    Example:
        >>> ds = read("runs/digits/dataset", "train", batch_size=32, seed=0)  # doctest: +SKIP
        >>> features, label = next(iter(ds))                                  # doctest: +SKIP
        >>> features["mfcc"].shape                                            # doctest: +SKIP
        TensorShape([32, 71, 13])
    """
    manifest = dataset_dir if isinstance(dataset_dir, Manifest) else load_manifest(dataset_dir)
    schema = manifest.schema
    if cache and cache not in ("memory", "none"):
        # tf.data reuses an existing cache file as it is: name it after the split and its
        # shards' checksums, so a rewritten dataset never reads a stale cache.
        cache = f"{cache}.{split}.{manifest.split_digest(split)[:16]}"
    # Unshuffled reads keep the stored order (predictions line up with records); seeded
    # reads are reproducible; otherwise tf.data may reorder for speed.
    deterministic = True if (seed is not None or not shuffle) else None
    if cache == "memory":
        _warn_on_memory_cache(manifest, split)

    ds = list_shards(manifest, split, shuffle=shuffle, seed=seed)
    # Unshuffled: one shard after the other, so the order is the stored order.
    ds = ds.apply(interleave_records(compression=manifest.compression, cycle_length=cycle_length if shuffle else 1,
                                     deterministic=deterministic))
    # The manifest knows the record count: declaring it gives Keras a step count for its
    # progress bar, and fails loudly if the shards do not hold what the manifest says.
    ds = ds.apply(tf.data.experimental.assert_cardinality(manifest.num_examples(split)))
    ds = ds.apply(cache_records(cache=cache))
    if shuffle:
        ds = ds.apply(shuffle_records(buffer_size=shuffle_buffer, seed=seed))
    if repeat:
        ds = ds.repeat()
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.apply(parse_records(schema, deterministic=deterministic))
    ds = ds.apply(pad_sequences(schema, deterministic=deterministic))
    ds = ds.apply(prefetch(buffer_size=prefetch_buffer))
    if not deterministic:
        options = tf.data.Options()
        options.deterministic = False
        ds = ds.with_options(options)
    return ds
