"""One process's part of a split, when several processes train together (the trainer's
``train.strategy: multi_worker``): which records it reads, and how many per epoch.

Every process of a multi-process job reads its own part of the training split, and
every process must run the same number of steps with batches of the same shape (each
step is a collective across processes: a process with one batch more waits forever).
`ProcessShard.plan` decides, from the manifest alone (so every process decides the
same), both what a process reads and the common record count per process:

* **by file**, when the split has at least as many shards as processes and they deal
  evenly: the shards are dealt to the processes, largest first, each to the process
  holding the fewest records so far (balanced by record count, not by file count), and
  each process reads only its own files. Evenly: the smallest part leaves at most
  `MAX_LEFT_OUT` (1%) of the split out of an epoch (below);
* **by record**, otherwise: every process reads every shard in the stored order and
  keeps every ``count``-th record (`Dataset.shard`), with a warning to write the split
  in more shards, a multiple of ``count`` (``output.num_shards``).

Each process then takes ``records`` records per epoch, the smallest part's size
(`take_records`), so all run ``ceil(records / batch)`` steps with the same last batch.
An epoch covers ``count × records`` records of the split: all of them when the parts
are equal, otherwise all but the largest parts' surplus (by file: records left out at
random each epoch, as the shuffle orders them; by record: ``n mod count``
records, as the shuffle orders them). `ProcessPlan.left_out` says how many.

Example:
    >>> m = load_manifest(dataset_dir)
    >>> plans = [ProcessShard(i, 2).plan(m, "train") for i in range(2)]
    >>> plans[0].records == plans[1].records, set(plans[0].paths or ()) & set(plans[1].paths or ())
    (True, set())
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Optional

import tensorflow as tf

from tfstream.pipelines.manifest import Manifest
from tfstream.pipelines.read.stages import Stage

_log = logging.getLogger(__name__)

# Shards are dealt to processes (each reads its own files) when the smallest part leaves at
# most this share of the split out of an epoch; otherwise the split is read by record.
MAX_LEFT_OUT = 0.01


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    """What one process reads of a split.

    Attributes:
        paths: its shard files (by file), or None: every shard (by record).
        held: the records of its part (by record: every ``count``-th).
        records: the records it takes per epoch (the same on every process).
        left_out: the split's records that no process takes in an epoch.
    """

    paths: Optional[tuple[str, ...]]
    held: int
    records: int
    left_out: int

    @property
    def by_record(self) -> bool:
        return self.paths is None


@dataclasses.dataclass(frozen=True)
class ProcessShard:
    """Process ``index`` of ``count`` (``jax.process_index()``, ``jax.process_count()``)."""

    index: int
    count: int

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise ValueError(f"process index {self.index} is not in 0..{self.count - 1} (of {self.count} processes)")

    def plan(self, manifest: Manifest, split: str) -> ProcessPlan:
        """This process's files and its record count per epoch (see the module docstring)."""
        counts = [s.records for s in manifest.split(split).shards]
        n = sum(counts)
        if len(counts) >= self.count:
            parts, sizes = self._deal(counts)
            if n - self.count * min(sizes) <= MAX_LEFT_OUT * n:
                paths = manifest.shard_paths(split)
                return ProcessPlan(tuple(paths[i] for i in sorted(parts[self.index])), sizes[self.index], min(sizes),
                                   n - self.count * min(sizes))
        held = n // self.count + (self.index < n % self.count)  # Dataset.shard's count
        return ProcessPlan(None, held, n // self.count, n % self.count)

    def _deal(self, counts: list[int]) -> tuple[list[list[int]], list[int]]:
        """The shards (indices) of each process, and its record count: largest first, each
        to the lightest process (ties: the lowest index), from the manifest only."""
        parts: list[list[int]] = [[] for _ in range(self.count)]
        sizes = [0] * self.count
        for i in sorted(range(len(counts)), key=lambda i: (-counts[i], i)):
            lightest = min(range(self.count), key=lambda p: (sizes[p], p))
            parts[lightest].append(i)
            sizes[lightest] += counts[i]
        return parts, sizes

    def warning(self, manifest: Manifest, split: str) -> Optional[str]:
        """Why the split is read by record (each process reads all of it), if it is."""
        if not self.plan(manifest, split).by_record:
            return None
        counts = [s.records for s in manifest.split(split).shards]
        why = (f"has {len(counts)} shard(s) for {self.count} processes" if len(counts) < self.count else
               f"has {len(counts)} shards of unequal sizes: dealt to {self.count} processes, the smallest part "
               f"would leave {sum(counts) - self.count * min(self._deal(counts)[1])} of {sum(counts)} records out "
               f"of every epoch (more than {MAX_LEFT_OUT:.0%})")
        return (f"split {split!r} {why}: every process reads all of it and keeps one record in {self.count} "
                f"({self.count}x the reading); write it in more shards, a multiple of {self.count} "
                f"(output.num_shards: {{{split}: {self.count * max(1, -(-len(counts) // self.count))}}} or more), "
                f"so that each process reads its own files")


def take_records(records: int) -> Stage:
    """Blocks (vectors) of records → the first ``records`` records, in the same blocks
    (the last one cut): a ``take`` counted in records, not elements. The blocks after
    them are read and dropped, not cut off, so that a cache upstream is completed.

    Example:
        >>> ds = tf.data.Dataset.from_tensor_slices(tf.reshape(tf.range(10), (5, 2)))
        >>> [b.numpy().tolist() for b in ds.apply(take_records(5))]
        [[0, 1], [2, 3], [4]]
    """
    total = tf.constant(records, tf.int64)

    def cut(seen, block):
        size = tf.size(block, out_type=tf.int64)
        keep = tf.clip_by_value(total - seen, 0, size)
        return seen + size, block[:keep]

    def stage(blocks: tf.data.Dataset) -> tf.data.Dataset:
        return blocks.scan(tf.constant(0, tf.int64), cut).filter(lambda block: tf.size(block) > 0)

    return stage
