"""The input pipeline's memory estimate, and the budget it is held to."""

import pytest

from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.memory import (
    MemoryBudgetError,
    MemoryEstimate,
    MemoryPart,
    MiB,
    check_budget,
    estimate_input_memory,
)


def _parts(est):
    return {p.name: p for p in est.parts}


def test_parts_follow_the_manifest_and_the_settings(flights_dataset):
    m = load_manifest(flights_dataset)
    shards = m.shards("train")
    mean = sum(s["record_bytes"] for s in shards) / m.num_examples("train")
    small = estimate_input_memory(m, "train", batch_size=64, shuffle_buffer=1000, parallel_calls=2)
    big = estimate_input_memory(m, "train", batch_size=64, shuffle_buffer=100_000, parallel_calls=2)
    grown = _parts(big)["shuffle buffer"].expected - _parts(small)["shuffle buffer"].expected
    assert grown == pytest.approx(2 * 99_000 * (mean + 64), rel=1e-6)  # records held twice, plus overhead
    assert _parts(small)["cache"].expected == 0
    cached = estimate_input_memory(m, "train", batch_size=64, cache="memory", parallel_calls=2)
    assert _parts(cached)["cache"].expected >= m.split_bytes("train")
    unshuffled = estimate_input_memory(m, "train", batch_size=64, shuffle=False, parallel_calls=2)
    assert _parts(unshuffled)["shuffle buffer"].expected == 0
    # tabular records: 6 numbers (4 of them int64) + 3 strings + an int64 label per example, parsed
    fixed = 4 * 8 + 2 * 4 + 3 * 32 + 8
    assert _parts(small)["prefetch"].expected == 4 * 64 * fixed
    assert "shuffle buffer" in small.format() and "total" in small.format()


def test_sequences_are_counted_padded(digits_dataset):
    m = load_manifest(digits_dataset)
    longest = m.statistics("train")["features"]["mfcc"]["length"]["max"]
    est = estimate_input_memory(m, "train", batch_size=32, prefetch=1, parallel_calls=1)
    worst = _parts(est)["prefetch"].worst
    assert worst == 32 * (8 + 8) + 32 * longest * 13 * 4  # every batch padded to the longest sequence
    bucketed = estimate_input_memory(m, "train", batch_size=32, prefetch=1, parallel_calls=1, max_tokens_per_batch=256)
    assert _parts(bucketed)["prefetch"].worst < worst


def test_budget_refuses_and_names_the_setting_to_lower(flights_dataset):
    m = load_manifest(flights_dataset)
    est = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=200_000, parallel_calls=2, budget_mb=16)
    with pytest.raises(MemoryBudgetError, match=r"the input pipeline needs about [\d.]+ MiB, more than "
                                                r"reader.memory_budget_mb 16; the largest part is the shuffle buffer "
                                                r"\([\d.]+ MiB\): lower reader.shuffle_buffer to [\d,]+ or less, or "
                                                r"raise reader.memory_budget_mb"):
        check_budget(est, 200_000)
    fits = estimate_input_memory(m, "train", batch_size=256, shuffle_buffer=1000, parallel_calls=2, budget_mb=64)
    assert check_budget(fits, 1000) is None and fits.expected < 64 * MiB
    cached = MemoryEstimate((MemoryPart("cache", "reader.cache", 900 * MiB, 900 * MiB),
                             MemoryPart("prefetch", "reader.prefetch", MiB, MiB)), budget=512 * MiB)
    with pytest.raises(MemoryBudgetError, match=r"the largest part is the cache \(900.0 MiB\): set reader.cache "
                                                r"to none or to a file prefix \(a file cache costs no memory\)"):
        check_budget(cached, 10_000)


def test_the_suggested_shuffle_buffer_fits(flights_dataset):
    import re

    m = load_manifest(flights_dataset)
    settings = dict(batch_size=256, parallel_calls=2, budget_mb=16)
    with pytest.raises(MemoryBudgetError) as e:
        check_budget(estimate_input_memory(m, "train", shuffle_buffer=200_000, **settings), 200_000)
    suggested = int(re.search(r"to ([\d,]+) or less", str(e.value)).group(1).replace(",", ""))
    est = estimate_input_memory(m, "train", shuffle_buffer=suggested, **settings)
    check_budget(est, suggested)  # does not raise (it may warn: the largest records would not fit)
    assert est.expected <= 16 * MiB


def test_worst_case_over_budget_is_a_warning(digits_dataset):
    m = load_manifest(digits_dataset)
    est = estimate_input_memory(m, "train", batch_size=32, shuffle_buffer=3000, parallel_calls=2)
    budget_mb = (est.expected + est.worst) / 2 / MiB
    est = estimate_input_memory(m, "train", batch_size=32, shuffle_buffer=3000, parallel_calls=2, budget_mb=budget_mb)
    warning = check_budget(est, 3000)
    assert warning.startswith("the input pipeline needs about") and "with the largest records" in warning
