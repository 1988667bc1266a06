"""`ReadOptions`: how a split is read with tf.data, the job config's ``reader:`` section;
the same typed object in YAML, in Python (`reader.read`), in the trainer and in the
benchmarks. Every setting is bounded (see `config_types`), and `reader.read` holds the
values to what the split holds before TensorFlow sees them.

Example:
    >>> ReadOptions(cycle_length=100_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: reader.cycle_length: expected 1..1024, got 100000; ...
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, Mapping, Optional, Union

from pydantic import BeforeValidator, Field, StrictStr, model_validator

from tfstream.pipelines.config_errors import check, show
from tfstream.pipelines.config_service import ServiceOptions
from tfstream.pipelines.config_types import (MAX_CYCLE_LENGTH, MAX_MEMORY_MB, MAX_PREFETCH, MAX_SHUFFLE_BUFFER, Int,
                                             Section, replace, validate, within)


def _no_cache(value: Any) -> Any:
    # None (read()'s old default) and "" have always meant no cache
    return "none" if value is None or value == "" else value


class ReadOptions(Section):
    """How a split is read with tf.data (the config's ``reader:`` section); the names are
    tf.data's.

    Attributes:
        batch_size: records per batch; with bucketing, the most sequences per batch.
        shuffle_buffer: records held for shuffling the training split.
        cycle_length: shards read in parallel (interleaved).
        cache: ``"none"``, ``"memory"`` (the whole split, kept after the first epoch:
            for splits that fit), or a file prefix (written in the first epoch, no memory).
        prefetch: batches prepared ahead; -1 lets tf.data tune it (AUTOTUNE).
        seed: makes file order, interleaving and shuffling reproducible.
        max_tokens_per_batch: buckets the training split's sequences by length (see
            `bucket_plan`): ``num_buckets`` buckets that pad least, each batch holding
            about this many padded steps and at most ``batch_size`` sequences. None: no
            bucketing, batches of ``batch_size`` padded to their longest sequence.
        num_buckets: buckets made with ``max_tokens_per_batch`` (None: 8).
        memory_budget_mb: bounds the input pipeline: `tfstream train` estimates its
            memory from the manifest, refuses to start when it does not fit (naming the
            setting to lower), and caps tf.data's autotuner with it. None: no budget.
        service: read the training split through a tf.data service (`ServiceOptions`):
            reading, shuffling, parsing and padding run on its workers. None: in this
            process. Only the training split: `for_evaluation` drops it.
    """

    _key_path = "reader"
    batch_size: Int = Field(256, description="Records per batch (1..1000000); with bucketing, the most per batch; "
                                             "under train.strategy mirrored or multi_worker, the global batch, "
                                             "split across the devices or processes.")
    shuffle_buffer: Int = Field(10000, description="Records held for shuffling the training split (0..100,000,000; "
                                                   "more than the split holds shuffles the whole split).")
    cycle_length: Int = Field(4, description="Shards read in parallel, a thread each (1..1024; more than the split "
                                             "has reads all of them).")
    cache: Annotated[StrictStr, BeforeValidator(_no_cache)] = Field(
        "none", description="none, memory (for splits that fit), or a file prefix (costs no memory).")
    prefetch: Int = Field(-1, description="Batches prepared ahead (0..1024); -1: AUTOTUNE.")
    seed: Optional[Int] = Field(None, description="Makes file order, interleaving and shuffling reproducible (a "
                                                  "64-bit integer).")
    max_tokens_per_batch: Optional[Int] = Field(
        None, description="Sequences: bucket the training split by length, about this many padded steps per batch "
                          "(1..100,000,000; default: no bucketing).")
    num_buckets: Optional[Int] = Field(None, description="With `max_tokens_per_batch`: buckets (1..1000; default 8).")
    memory_budget_mb: Optional[Int] = Field(
        None, description="MiB (16..16,777,216) the input pipeline may use: training refuses to start when the "
                          "estimate does not fit, and tf.data's autotuner is capped (default: no budget; training "
                          "still refuses a pipeline that may not fit in the machine's memory).")
    service: Optional[ServiceOptions] = Field(
        None, description="Read the training split through a tf.data service (keys below): reading, shuffling, "
                          "parsing and padding run on its workers, the trainer gets batches (default: null, in this "
                          "process). The validation and eval splits are always read here, in their stored order.")

    @model_validator(mode="after")
    def _rules(self) -> ReadOptions:
        check(self.memory_budget_mb is None or self.memory_budget_mb >= 16,
              f"reader.memory_budget_mb: expected >= 16 (MiB), got {show(self.memory_budget_mb)}")
        within("reader.memory_budget_mb", self.memory_budget_mb, 16, MAX_MEMORY_MB,
               "16 TiB is more memory than one machine has, and training holds the input pipeline to this "
               "machine's memory anyway; lower it")
        within("reader.batch_size", self.batch_size, 1, 1_000_000, "a batch is parsed as one tensor; lower it")
        within("reader.shuffle_buffer", self.shuffle_buffer, 0, MAX_SHUFFLE_BUFFER,
               "every record held costs at least 128 bytes besides its own size, 12 GiB at the bound; lower it "
               "(a buffer as large as the split already shuffles the whole split)")
        within("reader.cycle_length", self.cycle_length, 1, MAX_CYCLE_LENGTH,
               "each shard read in parallel takes a thread and a 1 MiB read buffer; lower it (a value at the "
               "split's shard count already reads all its shards at once)")
        check(self.prefetch == -1 or self.prefetch >= 0,
              f"reader.prefetch: expected -1 (AUTOTUNE) or >= 0, got {show(self.prefetch)}")
        within("reader.prefetch", self.prefetch, -1, MAX_PREFETCH,
               "prefetched batches are held in memory, and a few hide the input's latency; lower it, or use -1 "
               "(AUTOTUNE)")
        within("reader.seed", self.seed, -2**63, 2**63 - 1, "TensorFlow's seeds are 64-bit integers")
        check(self.max_tokens_per_batch is None or 1 <= self.max_tokens_per_batch <= 100_000_000,
              f"reader.max_tokens_per_batch: expected 1..100000000 (or leave it out: no bucketing), "
              f"got {show(self.max_tokens_per_batch)}")
        if self.num_buckets is not None:
            within("reader.num_buckets", self.num_buckets, 1, 1000, "each bucket holds a partial batch; lower it")
            check(self.max_tokens_per_batch is not None,
                  "reader.num_buckets: buckets are made only with max_tokens_per_batch; set it, or remove num_buckets")
        check(self.service is None or self.cache == "none",
              f"reader.cache: {show(self.cache)} cannot be used with reader.service: each worker would cache only "
              f"the shards it read in the first epoch (a file cache would then be read back in place of the shards "
              f"the service gives it); set reader.cache to none, or remove reader.service")
        return self

    @classmethod
    def resolve(cls, options: Union[ReadOptions, Mapping[str, Any], None] = None, **overrides: Any) -> ReadOptions:
        """The options a reader runs with: ``options`` (a `ReadOptions`, a mapping of its
        fields such as a YAML ``reader:`` section, or None for the defaults) with
        ``overrides`` (see `with_overrides`).

        Example:
            >>> ReadOptions.resolve({"batch_size": 32}, seed=0)
            ReadOptions(batch_size=32, shuffle_buffer=10000, cycle_length=4, cache='none', prefetch=-1, seed=0, max_tokens_per_batch=None, num_buckets=None, memory_budget_mb=None, service=None)
        """
        if options is None:
            options = cls()
        elif isinstance(options, Mapping):
            options = validate(cls, options)
        elif not isinstance(options, cls):
            raise TypeError(f"options: expected a ReadOptions (the config's `reader:` section) or a mapping of its "
                            f"fields, got {type(options).__name__}")
        return options.with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> ReadOptions:
        """These options with ``overrides`` (field names), checked as on load.

        Turning bucketing off (``max_tokens_per_batch=None``) also drops ``num_buckets``,
        which means nothing without it.

        Raises:
            TypeError: a keyword that is not a field, with the closest one.
            ConfigError: a value out of range (``reader.batch_size: ...``).

        Example:
            >>> ReadOptions(batch_size=64).with_overrides(seed=1).seed
            1
            >>> ReadOptions().with_overrides(prefetch_buffer=2)
            Traceback (most recent call last):
            ...
            TypeError: unexpected keyword argument 'prefetch_buffer': not a ReadOptions field; did you mean 'prefetch'? ...
        """
        fields = list(type(self).model_fields)
        for key in overrides:
            if key not in fields:
                close = difflib.get_close_matches(key, fields, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise TypeError(f"unexpected keyword argument {key!r}: not a ReadOptions field{hint} (the fields: "
                                f"{', '.join(fields)})")
        if not overrides:
            return self
        if "max_tokens_per_batch" in overrides and overrides["max_tokens_per_batch"] is None:
            overrides.setdefault("num_buckets", None)
        return replace(self, **overrides)

    def for_evaluation(self) -> ReadOptions:
        """The options for a validation or eval split: these without the cache, the
        bucketing and the service. Evaluation metrics do not depend on the batching,
        unbucketed reads keep the stored order, and a split read once per epoch gains
        little from a cache that costs memory or disk. A tf.data service would lose the
        order (``distributed_epoch``) or count records several times
        (``parallel_epochs``). (`tfstream train` reads its validation and eval splits so.)

        Example:
            >>> ReadOptions(cache="memory", max_tokens_per_batch=512, num_buckets=4).for_evaluation().cache
            'none'
        """
        return replace(self, cache="none", max_tokens_per_batch=None, num_buckets=None, service=None)
