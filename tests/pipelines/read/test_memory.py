"""The input pipeline's memory estimate, and the budget it is held to."""

import re

import pytest

from tfstream.pipelines.manifest import Manifest, load_manifest
from tfstream.pipelines.read.memory import (
    MemoryBudgetError,
    MemoryEstimate,
    MemoryPart,
    MiB,
    check_budget,
    estimate_input_memory,
)


def _parts(est):
    return {p.name: p for p in est.parts}


def _big_tabular(records=2_000_000, record_bytes=200):
    """A manifest of a large tabular split (no files needed: the estimate reads the manifest)."""
    from tfstream.transforms.schema import Feature, Label, Schema

    schema = Schema((Feature("x", "numeric", "float32"), Feature("c", "categorical", "string")),
                    Label("y", "binary", ("no", "yes")))
    shard = {"file": "train/t-00000-of-00001.tfrecord", "records": records, "bytes": records * (record_bytes + 16),
             "record_bytes": records * record_bytes, "max_record_bytes": 2 * record_bytes, "sha256": "0" * 64}
    return Manifest({"schema": schema.to_json(), "splits": {"train": {"num_examples": records, "shards": [shard],
                                                                       "statistics": {"features": {}}}}}, "/big")


def test_parts_follow_the_manifest_and_the_settings(flights_dataset):
    m = load_manifest(flights_dataset)
    n = m.num_examples("train")
    mean = m.split("train").record_bytes / n
    small = estimate_input_memory(m, "train", batch_size=64, shuffle_buffer=1000, parallel_calls=2)
    big = estimate_input_memory(m, "train", batch_size=64, shuffle_buffer=4000, parallel_calls=2)
    grown = _parts(big)["shuffle buffer"].expected - _parts(small)["shuffle buffer"].expected
    assert grown == pytest.approx(2 * 3000 * (mean + 64), rel=1e-6)  # records held twice, plus overhead
    huge = estimate_input_memory(m, "train", batch_size=64, shuffle_buffer=10 * n, parallel_calls=2)
    assert _parts(huge)["shuffle buffer"].expected == pytest.approx(2 * n * (mean + 64), rel=1e-6)  # the split, at most
    assert _parts(small)["cache"].expected == 0
    cached = estimate_input_memory(m, "train", batch_size=64, cache="memory", parallel_calls=2)
    assert _parts(cached)["cache"].expected >= m.split("train").record_bytes
    unshuffled = estimate_input_memory(m, "train", batch_size=64, shuffle=False, parallel_calls=2)
    assert _parts(unshuffled)["shuffle buffer"].expected == 0
    # tabular records: 6 numbers (4 of them int64) + 3 strings + an int64 label per example, parsed
    fixed = 4 * 8 + 2 * 4 + 3 * 32 + 8
    assert _parts(small)["prefetch"].expected == 4 * 64 * fixed
    assert "shuffle buffer" in small.format() and "total" in small.format()


def test_sequences_are_counted_padded(digits_dataset):
    m = load_manifest(digits_dataset)
    length = m.split("train").statistics("mfcc").length
    est = estimate_input_memory(m, "train", batch_size=32, prefetch=1, parallel_calls=1)
    worst = _parts(est)["prefetch"].worst
    assert worst == 32 * (8 + 8) + 32 * length.max * 13 * 4  # every batch padded to the longest sequence
    expected = _parts(est)["prefetch"].expected  # padded to the expected longest of 32 draws
    assert 32 * (8 + 8) + 32 * length.quantiles[9] * 13 * 4 < expected < worst
    bucketed = estimate_input_memory(m, "train", batch_size=32, prefetch=1, parallel_calls=1, max_tokens_per_batch=256)
    assert _parts(bucketed)["prefetch"].worst < worst


def test_budget_refuses_and_names_the_setting_to_lower():
    m = _big_tabular()
    est = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=200_000, parallel_calls=2, memory_budget_mb=64)
    with pytest.raises(MemoryBudgetError, match=r"the input pipeline needs about [\d.]+ MiB, more than "
                                                r"reader.memory_budget_mb 64; the largest part is the shuffle buffer "
                                                r"\([\d.]+ MiB\): lower reader.shuffle_buffer to [\d,]+ or less, or "
                                                r"raise reader.memory_budget_mb"):
        check_budget(est, 200_000)
    fits = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=1000, parallel_calls=2, memory_budget_mb=64)
    assert check_budget(fits, 1000) is None and fits.expected < 64 * MiB
    cached = MemoryEstimate((MemoryPart("cache", "reader.cache", 900 * MiB, 900 * MiB),
                             MemoryPart("prefetch", "reader.prefetch", MiB, MiB)), budget=512 * MiB)
    with pytest.raises(MemoryBudgetError, match=r"the largest part is the cache \(900.0 MiB\): set reader.cache "
                                                r"to none or to a file prefix \(a file cache costs no memory\)"):
        check_budget(cached, 10_000)


def test_the_suggested_shuffle_buffer_fits():
    m = _big_tabular()
    settings = dict(batch_size=256, parallel_calls=2, memory_budget_mb=64)
    with pytest.raises(MemoryBudgetError) as e:
        check_budget(estimate_input_memory(m, "train", shuffle_buffer=500_000, **settings), 500_000)
    suggested = int(re.search(r"to ([\d,]+) or less", str(e.value)).group(1).replace(",", ""))
    est = estimate_input_memory(m, "train", shuffle_buffer=suggested, **settings)
    check_budget(est, suggested)  # does not raise (it may warn: the largest records would not fit)
    assert est.expected <= 64 * MiB and suggested > 50_000


def test_worst_case_over_budget_is_a_warning():
    m = _big_tabular()
    est = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=100_000, parallel_calls=2)
    budget_mb = int((est.expected + est.worst) / 2 / MiB)
    est = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=100_000, parallel_calls=2,
                                memory_budget_mb=budget_mb)
    warning = check_budget(est, 100_000)
    assert warning.startswith("the input pipeline needs about") and "with the largest records" in warning


def test_the_machine_memory_bounds_the_plan_without_a_budget():
    from tfstream.pipelines.read.memory import machine_memory

    assert machine_memory() > 64 * MiB
    m = _big_tabular()
    est = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=1_000_000, parallel_calls=2)
    assert est.budget is None and check_budget(est, 1_000_000, machine_bytes=1 << 40) is None
    machine = int(est.expected * 0.8)  # the expected figure does not fit: refused
    with pytest.raises(MemoryBudgetError, match=r"^the input pipeline needs about [\d.]+ MiB, more than this "
                                                r"machine's [\d.]+ MiB of memory; the largest part is the shuffle "
                                                r"buffer \([\d.]+ MiB\): lower reader.shuffle_buffer to ([\d,]+) or "
                                                r"less$") as e:
        check_budget(est, 1_000_000, machine_bytes=machine)
    suggested = int(re.search(r"to ([\d,]+) or less", str(e.value)).group(1).replace(",", ""))
    fits = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=suggested, parallel_calls=2)
    assert fits.expected <= machine and suggested > 100_000
    # Only the worst case (the largest records everywhere) over the machine: a warning.
    between = int((est.expected + est.worst) / 2)
    assert est.expected < between < est.worst
    warning = check_budget(est, 1_000_000, machine_bytes=between)
    assert "with the largest records, more than this machine's" in warning


def test_settings_are_counted_as_the_reader_runs_them():
    from tfstream.pipelines.read.memory import READ_BUFFER_BYTES, parallel_shards, shuffle_buffer_held

    m = _big_tabular(records=1000)  # one shard of 1,000 records of 200 bytes (the largest: 400)
    assert parallel_shards(m, "train", 1024) == 1 and parallel_shards(m, "train", 4) == 1
    assert shuffle_buffer_held(m, "train", 100_000_000, 128) == 2 * 8 * 128  # 8 blocks: one window, all blocks
    assert shuffle_buffer_held(m, "train", 500, 128) == 500
    est = _parts(estimate_input_memory(m, "train", cycle_length=1024, shuffle_buffer=100_000_000, parallel_calls=1))
    assert est["read buffers"].expected == READ_BUFFER_BYTES  # one shard: one read buffer, not 1,024
    assert est["shuffle buffer"].expected == 2 * 1000 * (200 + 64)  # the split, at most
    assert est["shuffle buffer"].worst == 2 * (1000 * 200 + 1000 * 64)  # never more than the split's bytes
