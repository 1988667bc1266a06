"""How many shards each split is written in, decided on the driver before any record is
written (a record's shard is ``hash % num_shards``), the same for the same source and
config on every run and runner, and for both writers.

A split named in ``output.num_shards`` gets that count. Any other split gets enough
shards for each to hold about ``output.target_shard_mb`` MiB of records, estimated from
the source (`source_size`: rows × the split's fraction × the mean size of a sample of
encoded, framed records), and never fewer than the fixed default of earlier versions,
``round(8 × fraction)`` (at least 1): a small dataset keeps its shards, and so its bytes,
and the reader still has shards to interleave and shuffle; a large split gets hundreds,
so that no worker sorts or writes a shard of many gigabytes. How each count was chosen
is recorded in the manifest (``splits.<split>.shard_sizing``).

tensorflow-datasets (``shard_utils.ShardConfig``) counts the same 16 bytes of framing a
record, and keeps shards between 64 MiB and 1 GiB (preferring 1024 of them). tfstream
aims at one size, 128 MiB by default: within that range, large enough for remote reads
to stream, and small enough that `write_arrays`, which sorts a whole shard in memory,
holds a few hundred MB at most.

Example:
    >>> shard_count(50 << 30, 128, 0.8)   # a 50 GiB split, 128 MiB a shard
    400
    >>> shard_count(30 << 20, 128, 0.8)   # 30 MiB: the default's 6 shards
    6
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Mapping, Optional

from tfstream.pipelines.config import MAX_SHARDS, JobConfig

_log = logging.getLogger(__name__)


def default_num_shards(fraction: float) -> int:
    """The fewest shards a split gets without ``output.num_shards``: 8 for the whole
    dataset, pro rata, at least 1 (the fixed default of earlier versions)."""
    return max(1, round(8 * fraction))


def shard_count(estimated_bytes: float, target_shard_mb: int, fraction: float) -> int:
    """The shards of a split of about ``estimated_bytes`` bytes of records:
    ``ceil(estimated_bytes / target)``, at least `default_num_shards` and at most
    `config.MAX_SHARDS`."""
    by_size = math.ceil(estimated_bytes / (target_shard_mb * 2**20))
    return max(default_num_shards(fraction), min(MAX_SHARDS, by_size))


def plan_shards(config: JobConfig, measure: Callable[[], Optional[Any]],
                shares: Optional[Mapping[str, float]] = None) -> dict[str, dict[str, Any]]:
    """Each split's shard count, and how it was chosen: split → ``{"num_shards": n,
    "source": ..., ...}`` (the rest is the manifest's ``shard_sizing`` entry).

    Args:
        config: the job config.
        measure: returns the source's `source_size.SourceSize` (or None when it cannot
            tell); called only when some split is not named in ``output.num_shards``.
        shares: each split's expected share of the rows (`SplitPlan.shares`); by
            default the config's own (a hash split's fraction).

    ``source`` is ``config`` (``output.num_shards`` names the split), ``estimate`` (the
    estimate asked for more shards than the default), or ``default`` (it did not, or
    nothing could be estimated); with an estimate the entry also holds
    ``target_shard_mb``, ``estimated_rows``, ``estimated_bytes`` (uncompressed, framed
    records) and ``rows_exact`` (whether the source's row count is exact, or estimated
    from its size).
    """
    fractions = dict(shares) if shares is not None else config.split_plan().shares()
    configured = config.output.num_shards
    planned = [split for split in fractions if split not in configured]
    if not planned and "target_shard_mb" in config.output.model_fields_set:
        _log.warning("output.target_shard_mb is ignored: output.num_shards names every split; remove it, or "
                     "remove the splits from output.num_shards whose count should follow the data")
    size = measure() if planned else None
    target = config.output.target_shard_mb
    plan: dict[str, dict[str, Any]] = {}
    for split, fraction in fractions.items():
        entry: dict[str, Any] = {}
        if size is not None:
            entry = {"target_shard_mb": target, "estimated_rows": round(size.rows * fraction),
                     "rows_exact": size.rows_exact}
            if size.record_bytes is not None:
                entry["estimated_bytes"] = round(size.rows * fraction * size.record_bytes)
        if split in configured:
            n, how = configured[split], "config"
        elif "estimated_bytes" in entry:
            n = shard_count(entry["estimated_bytes"], target, fraction)
            how = "estimate" if n > default_num_shards(fraction) else "default"
        else:
            n, how = default_num_shards(fraction), "default"
        plan[split] = {"num_shards": n, "source": how, **entry}
    _log.info("shards: %s", ", ".join(_describe(split, p) for split, p in plan.items()))
    return plan


def _describe(split: str, p: dict[str, Any]) -> str:
    text = f"{split} {p['num_shards']} ({p['source']}"
    if "estimated_bytes" in p:
        text += f": about {p['estimated_bytes'] / 2**20:.1f} MiB of records, {p['target_shard_mb']} MiB a shard"
    return text + ")"


def shard_sizing(plan: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The manifest's ``shard_sizing`` entries of a plan (its counts are the shards'
    own, ``num_shards``)."""
    return {split: {k: v for k, v in p.items() if k != "num_shards"} for split, p in plan.items()}


__all__ = ["default_num_shards", "plan_shards", "shard_count", "shard_sizing"]
