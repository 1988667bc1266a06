"""How much memory the input pipeline needs, worked out before it runs.

`estimate_input_memory` adds up what a `read` pipeline holds at once, from the manifest
(the mean and the largest record of the split, the feature shapes, the longest
sequence) and the reader settings:

    read buffers     cycle_length shards read in parallel, one read buffer each
    shuffle buffer   shuffle_buffer serialized records, held twice at the peak
    cache            the whole split, when ``cache: memory``
    batches in work  one serialized and one parsed batch per parallel parse call
    prefetch         prefetched parsed batches

Each part is given as expected (mean record) and at worst (largest record, longest
sequence in every batch). The trainer prints the table, warns when the worst case goes
over ``reader.memory_budget_mb`` and refuses to start when even the expected figure does,
or when the worst case does not fit in this machine's memory (`machine_memory`), budget
or not, naming the setting to lower and a value that fits. tf.data's own autotuner,
which grows buffers as it sees fit, is bounded by the same budget
(``options.autotune.ram_budget``).

The settings are counted as `read` runs them: ``cycle_length`` at most the split's
shards (`parallel_shards`), the shuffle buffer at most the split's records
(`shuffle_buffer_held`), a batch at most the split, so the plan and TensorFlow never
disagree on what a setting larger than the split costs.

With ``reader.service`` (the training split read by tf.data service workers) this
process holds only the batches it receives: one being batched again (see
`reader.read`) and the prefetched ones; what the workers hold (their read buffers,
shuffle buffer, cache and batches in work, the figures above) is on their machines and
is not counted.

What is not counted: TensorFlow itself, the model and its optimizer state, Keras'
own buffers; the estimate is for the input pipeline only.

Example:
    >>> est = estimate_input_memory(load_manifest(dataset_dir), "train", batch_size=256)
    >>> print(est.format(terminal=False))  # doctest: +ELLIPSIS
    input pipeline part   setting ...
    ...
    total ...
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

from tfstream.pipelines.config import ReadOptions
from tfstream.pipelines.manifest import LengthStatistics, Manifest
from tfstream.pipelines.tables import render_table

MiB = 1 << 20
READ_BUFFER_BYTES = 1 << 20  # the read stages' default buffer_size
# A tf.string element costs its bytes plus a tstring header and tf.data's per-element
# bookkeeping; measured order of magnitude, kept deliberately round.
ELEMENT_OVERHEAD_BYTES = 64
# With prefetch: AUTOTUNE the autotuner picks the depth; it is counted as this many
# batches (and capped by options.autotune.ram_budget when a budget is set).
AUTOTUNE_PREFETCH_BATCHES = 4

# The shuffle holds its records twice at its peak: the blocks waiting in its buffer,
# and the window being permuted into a new tensor (see stages.shuffle_blocks).
# Measured on flights (200-byte records): 2.0 x records x (record + overhead) for
# shuffle buffers of 100k and 250k records, against peak RSS.
SHUFFLE_COPIES = 2

_DTYPE_BYTES = {"float32": 4, "int64": 8, "string": 32}


class MemoryBudgetError(ValueError):
    """The input pipeline would not fit in ``reader.memory_budget_mb``; the message says
    which setting to lower."""


@dataclasses.dataclass(frozen=True)
class MemoryPart:
    name: str
    setting: str  # the config key that scales it
    expected: int  # bytes
    worst: int  # bytes
    per_unit: tuple[float, float] = (0.0, 0.0)  # bytes per unit of the setting (expected, worst); 0: not linear


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """The input pipeline's memory, part by part (bytes)."""

    parts: tuple[MemoryPart, ...]
    budget: Optional[int] = None

    @property
    def expected(self) -> int:
        return sum(p.expected for p in self.parts)

    @property
    def worst(self) -> int:
        return sum(p.worst for p in self.parts)

    def largest(self) -> MemoryPart:
        return max(self.parts, key=lambda p: p.expected)

    def format(self, *, terminal: Optional[bool] = None) -> str:
        """The estimate as a table (see `tables.render_table`)."""
        rows = [[p.name, p.setting, _mib(p.expected), _mib(p.worst)] for p in self.parts]
        rows.append(["total", "", _mib(self.expected), _mib(self.worst)])
        if self.budget is not None:
            rows.append(["budget", "reader.memory_budget_mb", _mib(self.budget), ""])
        return render_table(["input pipeline part", "setting", "expected MiB", "worst MiB"], rows, terminal=terminal)


def machine_memory() -> Optional[int]:
    """Bytes of memory this process can have: the machine's physical memory, or its
    container's limit (cgroup v2 or v1) when that is lower; None where neither is known."""
    try:
        total: Optional[int] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on Linux or macOS
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except (OSError, ValueError):
            continue
        if text.isdigit():  # "max": no limit
            total = min(total, int(text)) if total else int(text)
        break
    return total


def memory_cache_warning(manifest: Manifest, split: str, *, machine_bytes: Optional[int] = None) -> Optional[str]:
    """The warning for ``cache: memory`` on a split whose records take over a quarter of
    this machine's memory (`machine_memory`; or ``machine_bytes``), else None. `read`
    logs it; `tfstream doctor --config` reports it.

    Example:
        >>> memory_cache_warning(load_manifest(dataset_dir), "train", machine_bytes=1 << 20)  # doctest: +ELLIPSIS
        "cache='memory' on split 'train' holds ... MB of records, over a quarter of this machine's 1 MB of memory; ..."
    """
    total = machine_memory() if machine_bytes is None else machine_bytes
    if total is None:
        return None
    size = manifest.split(split).record_bytes
    if size <= total // 4:
        return None
    return (f"cache='memory' on split {split!r} holds {size / 2**20:.0f} MB of records, over a quarter of this "
            f"machine's {total / 2**20:.0f} MB of memory; use a file cache (cache='/path/prefix') or no cache")


def parallel_shards(manifest: Manifest, split: str, cycle_length: int) -> int:
    """``cycle_length`` as `read` runs it: at most the split's shard count. More
    interleave slots than shards read the same blocks in the same order (each slot holds
    one shard until it is done), yet each slot costs a thread."""
    return max(1, min(cycle_length, len(manifest.split(split).shards)))


def shuffle_buffer_held(manifest: Manifest, split: str, shuffle_buffer: int, block_size: int) -> int:
    """``shuffle_buffer`` as `read` passes it to `stages.shuffle_blocks`: at most twice
    the split's blocks of ``block_size`` records. There one window holds the whole split
    and the block buffer all its blocks, so any larger value gives the same order for
    the same seed (checked, epoch after epoch), while TensorFlow would size its buffers
    by the value. Either way the buffer holds at most the split's records."""
    blocks = sum(-(-s.records // block_size) for s in manifest.split(split).shards)
    return min(shuffle_buffer, 2 * blocks * block_size)


def _cpus() -> int:
    """The CPUs this process may run on (a container's share, not the host's)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _mib(n: int) -> float:
    return round(n / MiB, 1)


def _record_bytes(manifest: Manifest, split: str) -> tuple[float, int]:
    shards = manifest.split(split).shards
    n = sum(s.records for s in shards)
    total = sum(s.record_bytes for s in shards)
    largest = max((s.max_record_bytes for s in shards), default=0)
    mean = total / n if n else 0.0
    return mean, max(largest, int(mean))


def _example_bytes(manifest: Manifest) -> tuple[int, int]:
    """Parsed bytes of one example: (fixed part, per sequence step)."""
    fixed = per_step = 0
    for f in manifest.features:
        size = _DTYPE_BYTES[f.dtype] * f.size
        if f.kind == "sequence":
            per_step += size
            fixed += 8  # <name>_length
        else:
            fixed += size
    return fixed + _DTYPE_BYTES[manifest.label.dtype], per_step


def _expected_longest(histogram: Mapping[int, int], batch_size: int) -> float:
    """E[max of batch_size lengths drawn from the histogram] = sum L (F(L)^B - F(L-)^B)."""
    counts = sorted(histogram.items())
    total = sum(v for _, v in counts)
    if not total:
        return 0.0
    expected, below = 0.0, 0
    for length, n in counts:
        expected += length * (((below + n) / total) ** batch_size - (below / total) ** batch_size)
        below += n
    return expected


def _batch_bytes(manifest: Manifest, split: str, batch_size: int, max_tokens_per_batch: Optional[int],
                 mean_record: float, max_record: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """One batch, serialized and parsed: ``((serialized, parsed) expected, (same) worst)``."""
    fixed, per_step = _example_bytes(manifest)
    sequences = manifest.schema.sequence_features
    stats = manifest.split(split).features.get(sequences[0].name) if sequences else None
    length = stats.length if stats is not None else LengthStatistics(0, 1, 0, 0.0, {})
    longest, shortest = length.max, max(1, length.min)
    mean_len = length.mean or 1.0
    if sequences and max_tokens_per_batch:
        # Bucketed: every batch holds about max_tokens_per_batch padded steps; short
        # buckets hold more examples (bounded by batch_size).
        examples = (min(batch_size, max_tokens_per_batch / mean_len), min(batch_size, max_tokens_per_batch / shortest))
        steps = (float(max_tokens_per_batch), float(max_tokens_per_batch))
    else:
        examples = (float(batch_size), float(batch_size))
        # Padded to the longest of the batch: expected, the mean of the largest of
        # batch_size lengths drawn from the histogram; at worst the longest of the split.
        steps = (batch_size * _expected_longest(length.histogram, batch_size), batch_size * float(longest))
    out = []
    for n, padded, record in zip(examples, steps, (mean_record, max_record)):
        out.append((n * (record + ELEMENT_OVERHEAD_BYTES), n * fixed + padded * per_step))
    return out[0], out[1]


def estimate_input_memory(manifest: Manifest, split: str, options: Optional[ReadOptions] = None, *,
                          shuffle: bool = True, parallel_calls: Optional[int] = None,
                          **overrides: Any) -> MemoryEstimate:
    """What ``read(manifest, split, options, shuffle=shuffle, **overrides)`` holds at once
    (see the module doc).

    Args:
        manifest: the dataset's manifest; split: the split read.
        options: the read settings (`ReadOptions`; default `ReadOptions()`), with
            ``overrides`` by field name, as `reader.read` takes them. Its
            ``memory_budget_mb`` is shown beside the total.
        shuffle: as in `reader.read`.
        parallel_calls: batches parsed at once (default: the number of CPUs, which is
            what AUTOTUNE allows at most).

    Returns:
        A `MemoryEstimate`.

    Example:
        >>> est = estimate_input_memory(load_manifest(dataset_dir), "train", batch_size=256, shuffle_buffer=20000)
        >>> est.expected <= est.worst
        True
    """
    options = ReadOptions.resolve(options, **overrides)
    batch_size, shuffle_buffer, cache = options.batch_size, options.shuffle_buffer, options.cache
    max_tokens_per_batch, prefetch, cycle_length = options.max_tokens_per_batch, options.prefetch, options.cycle_length
    budget_mb = options.memory_budget_mb
    mean_record, max_record = _record_bytes(manifest, split)
    # a batch never holds more than the split
    batch_size = max(1, min(batch_size, manifest.num_examples(split)))
    (ser_mean, parsed_mean), (ser_worst, parsed_worst) = _batch_bytes(
        manifest, split, batch_size, max_tokens_per_batch, mean_record, max_record)
    calls = parallel_calls or _cpus()
    depth = AUTOTUNE_PREFETCH_BATCHES if prefetch == -1 else prefetch
    cycles = parallel_shards(manifest, split, cycle_length) if shuffle else 1
    held = min(shuffle_buffer, manifest.num_examples(split)) if shuffle else 0
    cached = int(manifest.num_examples(split) * (mean_record + ELEMENT_OVERHEAD_BYTES)) if cache == "memory" else 0
    per_record = (SHUFFLE_COPIES * (mean_record + ELEMENT_OVERHEAD_BYTES),
                  SHUFFLE_COPIES * (max_record + ELEMENT_OVERHEAD_BYTES))
    # at worst every record held is the largest, yet they are never more than the split's bytes
    worst_held = SHUFFLE_COPIES * (min(held * max_record, manifest.split(split).record_bytes)
                                   + held * ELEMENT_OVERHEAD_BYTES)
    if options.service is not None and shuffle:  # the rest is on the service's workers
        parts = [MemoryPart("batches received", "reader.batch_size", int(2 * parsed_mean), int(2 * parsed_worst)),
                 MemoryPart("prefetch", "reader.prefetch", int(depth * parsed_mean), int(depth * parsed_worst))]
        return MemoryEstimate(tuple(parts), budget_mb * MiB if budget_mb else None)
    parts = [
        MemoryPart("read buffers", "reader.cycle_length", cycles * READ_BUFFER_BYTES, cycles * READ_BUFFER_BYTES,
                   (READ_BUFFER_BYTES, READ_BUFFER_BYTES)),
        MemoryPart("shuffle buffer", "reader.shuffle_buffer", int(held * per_record[0]),
                   int(max(worst_held, held * per_record[0])), per_record),
        MemoryPart("cache", "reader.cache", cached, cached),
        MemoryPart("batches in work", "reader.batch_size", int(calls * (ser_mean + parsed_mean)),
                   int(calls * (ser_worst + parsed_worst))),
        MemoryPart("prefetch", "reader.prefetch", int(depth * parsed_mean), int(depth * parsed_worst)),
    ]
    return MemoryEstimate(tuple(parts), budget_mb * MiB if budget_mb else None)


def check_budget(estimate: MemoryEstimate, shuffle_buffer: int, *,
                 machine_bytes: Optional[int] = None) -> Optional[str]:
    """Against ``estimate.budget`` and this machine's memory: raises when the expected
    memory does not fit in the budget or in the machine's memory (budget or not: such a
    pipeline would be killed, or crash TensorFlow, once training started); returns a
    warning (or None) when only the worst case, with the largest records everywhere,
    does not fit in the budget or the machine.

    Args:
        estimate: from `estimate_input_memory`.
        shuffle_buffer: the ``reader.shuffle_buffer`` setting (for the advice where the
            estimate does not say what a record costs).
        machine_bytes: the machine's memory (default: `machine_memory`).

    Raises:
        MemoryBudgetError: naming the largest part, its setting, and a value that fits.
    """
    machine = machine_memory() if machine_bytes is None else machine_bytes
    for limit, name, fix in ((estimate.budget, f"reader.memory_budget_mb {_mib(estimate.budget or 0):g}",
                              ", or raise reader.memory_budget_mb"),
                             (machine, f"this machine's {_mib(machine or 0):g} MiB of memory", "")):
        if limit and estimate.expected > limit:
            part = estimate.largest()
            raise MemoryBudgetError(
                f"the input pipeline needs about {_mib(estimate.expected)} MiB, more than {name}; the largest part "
                f"is the {part.name} ({_mib(part.expected)} MiB): "
                f"{_advice(part, limit - (estimate.expected - part.expected), 0, shuffle_buffer)}{fix}")
    for limit, name in ((estimate.budget, f"reader.memory_budget_mb {_mib(estimate.budget or 0):g}"),
                        (machine, f"this machine's {_mib(machine or 0):g} MiB of memory")):
        if limit and estimate.worst > limit:
            part = max(estimate.parts, key=lambda p: p.worst)
            return (f"the input pipeline needs about {_mib(estimate.expected)} MiB, but up to "
                    f"{_mib(estimate.worst)} MiB with the largest records, more than {name} (mostly the "
                    f"{part.name}: {_mib(part.worst)} MiB at worst; lower {part.setting} to be safe)")
    return None


def _advice(part: MemoryPart, room: float, case: int, shuffle_buffer: int) -> str:
    """What to do when ``part`` must shrink to ``room`` bytes (``case`` 0: its expected
    figure, 1: its worst)."""
    if part.setting == "reader.cache":
        return "set reader.cache to none or to a file prefix (a file cache costs no memory)"
    per_unit = part.per_unit[case]
    if not per_unit and part.setting == "reader.shuffle_buffer" and shuffle_buffer:
        per_unit = (part.expected, part.worst)[case] / shuffle_buffer
    if per_unit and room >= per_unit:
        return f"lower {part.setting} to {int(room / per_unit):,} or less"
    return f"lower {part.setting}"
