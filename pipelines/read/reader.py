"""`read`: one split of a tfstream dataset as tf.data batches for Keras.

`read` is composed of the exported stages (`stages`, `bucketing`) and configured by one
typed options object, `ReadOptions` (the YAML ``reader:`` section): the same names in
the config, in Python, in the trainer and in the benchmarks.

Example:
    >>> ds = read(dataset_dir, "train", batch_size=64, seed=1)
    >>> features, label = next(iter(ds))
    >>> int(label.shape[0])
    64
    >>> options = ReadOptions(batch_size=32, shuffle_buffer=1000, seed=0)
    >>> int(next(iter(read(dataset_dir, "eval", options.for_evaluation(), shuffle=False)))[1].shape[0])
    32
    >>> read(dataset_dir, "train", prefetch_buffer=2)
    Traceback (most recent call last):
    ...
    TypeError: unexpected keyword argument 'prefetch_buffer': not a ReadOptions field; did you mean 'prefetch'? ...
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any, Optional, Sequence, Union

import tensorflow as tf

from tfstream.pipelines.config import ConfigError, ReadOptions
from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.read.bucketing import DEFAULT_NUM_BUCKETS, BucketPlan, bucket_by_length, bucket_plan
from tfstream.pipelines.read.lookups import categorical_ids as lookup_categoricals
from tfstream.pipelines.read.memory import memory_cache_warning, parallel_shards, shuffle_buffer_held
from tfstream.pipelines.read.processes import ProcessShard, take_records
from tfstream.pipelines.read.stages import (
    BLOCK_SIZE,
    PaddingCounter,
    cache_records,
    count_padding,
    distribute_to_service,
    interleave_blocks,
    list_shards,
    parse_and_pad,
    prefetch,
    read_shards,
    shard_records,
    shuffle_blocks,
)
from tfstream.pipelines.window import window_manifest
from tfstream.transforms.label_scaling import LabelScaling
from tfstream.transforms.schema import length_key

_log = logging.getLogger(__name__)


def read(
    dataset: Union[str, Manifest, Sequence[Union[str, Manifest]]],
    split: str,
    options: Optional[ReadOptions] = None,
    *,
    shuffle: bool = True,
    repeat: bool = False,
    drop_remainder: bool = False,
    padding_counter: Optional[PaddingCounter] = None,
    raw_labels: bool = False,
    label_scaling: Optional[LabelScaling] = None,
    process: Optional[ProcessShard] = None,
    categorical_ids: Optional[str] = None,
    **overrides: Any,
) -> tf.data.Dataset:
    """Stream one split of a tfstream dataset as batches of ``(features, label)``.

    Args:
        dataset: the dataset directory, or its loaded `Manifest` (the reader reads
            exactly the shards that manifest names); or a list of them, read as one
            training window (`window.window_manifest`: all their shards interleaved,
            with their statistics merged).
        split: a split named in the manifest (``train``, ``eval``, ...).
        options: the read settings (`ReadOptions`, the config's ``reader:`` section);
            default `ReadOptions()`.
        shuffle: shuffle files and records (turn off for evaluation: the stored order).
        repeat: repeat forever (then give Keras `steps_per_epoch`).
        drop_remainder: drop the last, smaller batch (with bucketing: of each bucket).
        padding_counter: count real and padded sequence steps of the batches made (see
            `stages.count_padding`), for a padding-efficiency metric.
        raw_labels: give a regression label as stored, not as the model learns it.
        label_scaling: how a regression label is scaled (`Manifest.label_scaling`);
            default: the dataset's (its ``label.transform``, and standardized with the
            training split's statistics unless its config says
            ``label.standardize: false``).
        process: read only this process's part of the split, the same number of
            records on every process (`processes.ProcessShard`; several processes
            training together). Not with ``max_tokens_per_batch``.
        categorical_ids: give categorical features as ``int64`` ids, looked up with the
            vocabulary of this split (the one the model is built from; see `lookups`), not
            as strings: for a model on a Keras backend other than TensorFlow.
        **overrides: `ReadOptions` fields that replace those of ``options``
            (``read(d, "train", batch_size=32, seed=0)``; see
            `ReadOptions.with_overrides`).

    What the options do here: ``batch_size`` records per batch (with bucketing, the
    most per batch); ``shuffle_buffer`` records held for shuffling (see
    `stages.shuffle_blocks`); ``cycle_length`` shards read in parallel (shuffled reads);
    ``cache`` ``none``, ``memory`` or a file prefix, named
    ``<prefix>.<split>.<digest of the split's shards>.<layout>`` so a rewritten dataset
    never reads a stale cache; ``prefetch`` batches prefetched (-1: AUTOTUNE); ``seed``
    makes file order, interleaving and shuffling reproducible (without one, interleave
    and map may reorder elements for speed; unshuffled reads always keep the stored
    order); a ``cycle_length`` above the split's shard count, or a ``shuffle_buffer``
    above its size, is held to the split (the same order: see `memory.parallel_shards`
    and `memory.shuffle_buffer_held`); ``max_tokens_per_batch`` buckets sequences by length (`bucketing.bucket_plan`,
    on this split's statistics, by the first sequence feature; ignored with a warning
    for a dataset without sequences) into ``num_buckets`` buckets (8 when not set);
    ``memory_budget_mb`` caps tf.data's autotuner (``options.autotune.ram_budget``);
    ``service`` runs everything up to the parsing and padding on a tf.data service's
    workers (`stages.distribute_to_service`; order nondeterministic; ``drop_remainder``
    applies to the batches made again here, or, for sequences, to each worker's).

    Returns:
        A `tf.data.Dataset` of ``(features, label)``; features is a dict keyed by feature
        name, with a ``<name>_length`` entry per sequence feature; the label is a class
        index, or a regression target as the reference model learns it (transformed and
        standardized; ``raw_labels`` for the stored values). Its cardinality is the
        number of batches, known from the manifest (so Keras knows the steps); through
        a service, only where it is exact (see `_from_service`).

    Raises:
        ManifestError: no manifest, an unknown split, a shard missing or resized; in a
            list, datasets of different schemas, compressions or splits.
        TypeError: an override that is not a `ReadOptions` field (with the closest one).
        ConfigError: an override out of range (``reader.batch_size: ...``).
    """
    options = ReadOptions.resolve(options, **overrides)
    if isinstance(dataset, (list, tuple)):
        manifest = window_manifest(dataset)
    else:
        manifest = dataset if isinstance(dataset, Manifest) else load_manifest(dataset)
    schema = manifest.schema
    n = manifest.num_examples(split)
    batch_size = options.batch_size
    part = None
    if process is not None:
        if options.service is not None:
            raise ConfigError("reader.service: not with train.strategy: multi_worker (each process reads its own "
                              "part of the split here); remove reader.service, or train with another strategy")
        if options.max_tokens_per_batch is not None:
            raise ValueError("read(process=...) reads batches of batch_size records, the same shape on every "
                             "process; unset max_tokens_per_batch")
        part = process.plan(manifest, split)
        if warning := process.warning(manifest, split):
            _log.warning("%s", warning)
        n = part.records  # what this process gives per epoch
    plan, bucket_key = None, None
    if options.max_tokens_per_batch is not None:
        if not schema.sequence_features:
            _log.warning("max_tokens_per_batch=%d is ignored: the dataset %r has no sequence feature to bucket "
                         "by length; batches hold batch_size=%d records", options.max_tokens_per_batch,
                         manifest.name, batch_size)
        elif n:
            feature = schema.sequence_features[0].name
            plan = bucket_plan(manifest, split, feature, max_tokens_per_batch=options.max_tokens_per_batch,
                               num_buckets=options.num_buckets or DEFAULT_NUM_BUCKETS, max_batch_size=batch_size)
            bucket_key = length_key(feature)
    cache = options.cache
    if cache not in ("memory", "none"):
        # tf.data reuses an existing cache file as it is: name it after the split and its
        # shards' checksums, so a rewritten dataset never reads a stale cache. Shuffled
        # reads cache blocks of records, unshuffled reads records: a cache file holds one
        # layout, so the layout is part of its name.
        layout = f"blocks{BLOCK_SIZE}" if shuffle else "records"
        cache = f"{cache}.{split}.{manifest.split(split).digest[:16]}.{layout}"
        if process is not None:
            cache += f".process{process.index}of{process.count}"
    elif cache == "memory" and (warning := memory_cache_warning(manifest, split)):
        _log.warning("%s", warning)
    # Unshuffled reads keep the stored order (predictions line up with records); seeded
    # reads are reproducible; otherwise tf.data may reorder for speed.
    deterministic = True if (options.seed is not None or not shuffle) else None
    service = options.service
    # Through a service, each worker batches what it reads: the batch counts below hold
    # for the whole split only, so they are asserted here, in-process, or after the
    # service, where the batches are made again (`_from_service`): the workers' partial
    # batches are not dropped there.
    local = service is None
    rebatch_here = not local and not schema.sequence_features
    worker_drop = drop_remainder and local  # the batches are made again after the service

    # By record, every process lists every shard in the stored order: `Dataset.shard`
    # then deals the same records on every process.
    files = list_shards(manifest, split, shuffle=shuffle and not (part and part.by_record), seed=options.seed,
                        paths=part.paths if part else None)
    if not local and any("://" not in p and not os.path.isabs(p) for p in manifest.shard_paths(split, check=False)):
        _log.warning("reader.service: the shards of %r are named by a relative path (%s): each worker opens them "
                     "relative to its own working directory; give the dataset as an absolute path or a URL that "
                     "every worker can read", manifest.name, manifest.root)
    if shuffle:
        # Blocks, not records, from here to the batches: see `stages`. Settings larger
        # than the split are held to it (same order; TensorFlow sizes threads and
        # buffers by the setting, not by the data), as the memory planner counts them.
        # Each shard's record count is checked as it is read (per block: cheap): a shard
        # a few records short or long would otherwise pass the batch count below.
        cycle_length = parallel_shards(manifest, split, options.cycle_length)
        buffer_size = shuffle_buffer_held(manifest, split, options.shuffle_buffer, BLOCK_SIZE)
        if part is not None and part.by_record:
            ds = files.apply(read_shards(compression=manifest.compression))
            ds = ds.shard(process.count, process.index).batch(BLOCK_SIZE)
        else:
            ds = files.apply(interleave_blocks(compression=manifest.compression, cycle_length=cycle_length,
                                               deterministic=deterministic, records=shard_records(manifest, split)))
        ds = ds.apply(cache_records(cache=cache))
        ds = ds.apply(shuffle_blocks(buffer_size=buffer_size, block_size=BLOCK_SIZE, seed=options.seed,
                                     deterministic=deterministic))
        if part is not None:
            ds = ds.apply(take_records(part.records))
    else:
        ds = files.apply(read_shards(compression=manifest.compression))
        if part is not None and part.by_record:
            ds = ds.shard(process.count, process.index)
        # The manifest knows the record count: declaring it fails loudly if the shards
        # do not hold what the manifest says (and gives Keras a step count, below).
        if local:
            ds = ds.apply(tf.data.experimental.assert_cardinality(part.held if part else n))
        if part is not None:
            ds = ds.take(n)
        ds = ds.apply(cache_records(cache=cache))
    if repeat:
        ds = ds.repeat()
    if plan is not None:
        ds = ds.apply(bucket_by_length(plan=plan, length_key=bucket_key, drop_remainder=worker_drop))
        if local and not repeat and sum(plan.counts) == n:
            # Each bucket holds the same sequences every epoch, so the batch count is
            # known: Keras gets its step count (without it, Keras 3 warns that the
            # input "ran out of data" after the first epoch).
            ds = ds.apply(tf.data.experimental.assert_cardinality(plan.num_batches(drop_remainder)))
    elif shuffle:
        ds = ds.rebatch(batch_size, drop_remainder=worker_drop)
        if local and not repeat:
            # Blocks hide the record count (each shard's is checked in `interleave_blocks`);
            # the batch count tells Keras the steps.
            ds = ds.apply(tf.data.experimental.assert_cardinality(
                n // batch_size if drop_remainder else -(-n // batch_size)))
    else:
        ds = ds.batch(batch_size, drop_remainder=worker_drop)
    if raw_labels:
        label_scaling = None
    elif label_scaling is None:
        label_scaling = manifest.label_scaling()
    ds = ds.apply(parse_and_pad(schema, boundaries=plan.boundaries if plan is not None else None,
                                label_scaling=label_scaling, deterministic=deterministic))
    tf_options = tf.data.Options()
    if not deterministic:
        tf_options.deterministic = False
    if options.memory_budget_mb is not None:
        tf_options.autotune.ram_budget = int(options.memory_budget_mb) << 20
    if not local:
        # The options travel with the pipeline to the workers (their autotuner's budget).
        ds = ds.with_options(tf_options).apply(_from_service(
            options, n, rebatch=rebatch_here, drop_remainder=drop_remainder, repeat=repeat, plan=plan,
            length_key=bucket_key))
    if categorical_ids is not None:  # here, after the service: the lookup tables are this process's
        ds = ds.apply(lookup_categoricals(schema, manifest.split(categorical_ids).features,
                                          deterministic=deterministic))
    if padding_counter is not None:  # its variables are this process's: after the service
        ds = ds.apply(count_padding(padding_counter, schema))
    ds = ds.apply(prefetch(buffer_size=options.prefetch))
    return ds.with_options(tf_options)


def _from_service(options: ReadOptions, n: int, *, rebatch: bool, drop_remainder: bool, repeat: bool,
                  plan: Optional[BucketPlan] = None, length_key: Optional[str] = None):
    """The batches of ``options.service``'s workers, received here, batched again.

    Each worker batches the shards it reads, so the batch count depends on how the
    shards fell to the workers (each worker's last batch, per bucket, is partial), and
    changes from epoch to epoch. Keras 3 takes the batch count of a dataset that does
    not declare one from its first epoch, and stops later epochs there: a later epoch
    with more batches would lose its last ones without a word. So the batches are made
    again here, as the reader makes them in-process: tabular batches with ``rebatch``
    (vectorized, no per-record cost); padded sequence batches split into their records
    and batched again by the same bucket plan (``plan``, or ``batch_size`` records
    padded to the longest, without one). ``distributed_epoch`` then yields exactly the
    split's batch count every epoch, declared to Keras when the job is this reader's own.

    With a shared ``job_name`` (its readers share the records, in proportions unknown
    here) or in ``parallel_epochs`` (workers x the split's records, unknown here), no
    count is declared: Keras takes the first epoch's, logged as a warning.
    """
    service = options.service
    b = options.batch_size
    exact = not repeat and service.processing_mode == "distributed_epoch" and service.job_name is None

    def stage(ds):
        _check_dispatcher(service.dispatcher)
        ds = ds.apply(distribute_to_service(dispatcher=service.dispatcher, processing_mode=service.processing_mode,
                                            job_name=service.job_name))
        if rebatch:
            ds = ds.rebatch(b, drop_remainder=drop_remainder)
            batches = n // b if drop_remainder else -(-n // b)
        elif plan is not None:
            ds = ds.unbatch().apply(bucket_by_length(plan=plan, length_key=length_key, drop_remainder=drop_remainder))
            batches = plan.num_batches(drop_remainder) if sum(plan.counts) == n else None
        else:
            ds = ds.unbatch().padded_batch(b, drop_remainder=drop_remainder)
            batches = n // b if drop_remainder else -(-n // b)
        if exact and batches is not None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(batches))
        elif not repeat:
            _log.warning("reader.service: %s, so the trainer cannot know an epoch's batch count; Keras takes the "
                         "first epoch's, and a later epoch that holds more batches stops there. Keep the workers "
                         "and the readers of the job the same for the whole run",
                         "the job is shared (job_name)" if service.job_name is not None
                         else "parallel_epochs gives workers x the split's records")
        return ds

    return stage


def _check_dispatcher(address: str, timeout: float = 10.0) -> None:
    """Refuse a dispatcher that does not answer: TensorFlow would wait for it, silently,
    as long as it takes."""
    host, port = address.split("://", 1)[1].rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"reader.service.dispatcher: no tf.data service dispatcher answers at {address} ({e}); "
                          f"start one there (`tfstream data-service dispatcher --port {port}`) and its workers, or "
                          f"correct the address") from None
