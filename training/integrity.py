"""Shard integrity around training: fail before the first epoch, and name the file.

Two guards that `trainer.train` runs:

- `check_before_training`, once, before ``fit``: every shard of the training,
  validation and eval splits exists with its manifest size (one stat each); the
  validation and eval shards are read whole and checked (`inspect.verify`: records,
  SHA-256, CRCs) when they are small enough, and their first batch is parsed. A broken
  eval shard then stops the run in seconds, not after the last epoch with no model saved.
- `shard_errors_named`, around ``fit`` and ``evaluate``: TensorFlow reports a corrupt
  record as ``DataLossError: Graph execution error ... IteratorGetNext``, with no file
  name. The guard turns it (and a shard holding other records than its manifest entry)
  into an `IntegrityError` that names the file: from the reader's own message when it
  has one (`stages.SHARD_COUNT_MESSAGE`), else by checking the splits' shards with
  `inspect.verify` (sizes first, then every record) to find the culprit.

Example:
    >>> job = load_config("configs/flights_dense.yaml")
    >>> check_before_training(load_manifest(dataset_dir), job)  # passes: the dataset is whole
    >>> with shard_errors_named(load_manifest(dataset_dir), ["train"]):
    ...     pass
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Iterable, Iterator, Optional

from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.inspect.verify import IntegrityError, check_sizes, verify
from tfstream.pipelines.manifest import Manifest
from tfstream.pipelines.read.reader import read
from tfstream.pipelines.read.stages import SHARD_COUNT_MESSAGE

_log = logging.getLogger(__name__)

# Validation and eval shards up to this size in all are read whole before training (at
# ~100 MB/s, seconds); larger ones get the size check and a first batch only.
VERIFY_BEFORE_TRAINING_BYTES = 2 << 30
_COUNT_ERROR = re.compile(re.escape(SHARD_COUNT_MESSAGE) + r"\] \[(?P<path>[^\]]+)\](?P<rest>.*)")


def _tf_summary(error: Exception) -> str:
    """TensorFlow's own words for a failed read (``corrupted record at 3528155``), without
    the graph's traceback, node names and ``{{function_node ...}}`` noise."""
    text = getattr(error, "message", None) or str(error)
    lines = [re.sub(r"\{\{[^}]*\}\}|\[Op:[^\]]*\].*|\[\[.*", "", line).strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("File ", "Detected at node", "Graph execution"))]
    return f"{type(error).__name__}: {(lines[-1] if lines else '')[:300]}"


def _find_culprits(manifest: Manifest, splits: list[str]):
    """The shards of ``splits`` that fail: the cheap check first, then every record."""
    sizes = check_sizes(manifest, splits)
    if not sizes.ok:
        return sizes
    _log.warning("a shard of %s could not be read; checking their %d shard(s) to find it", splits, len(sizes.shards))
    return verify(manifest, splits)


@contextlib.contextmanager
def shard_errors_named(manifest: Manifest, splits: Iterable[Optional[str]]) -> Iterator[None]:
    """Turn TensorFlow's errors for a corrupt, truncated or miscounted shard of
    ``splits`` into an `IntegrityError` naming the file (see the module's docstring);
    other errors, and a read error that no shard explains, pass unchanged.

    Raises:
        IntegrityError: a shard of ``splits`` does not match the manifest.
    """
    import tensorflow as tf

    splits = [s for s in dict.fromkeys(splits) if s]
    try:
        yield
    except tf.errors.InvalidArgumentError as e:
        match = _COUNT_ERROR.search(str(e))
        if match is None:
            raise
        detail = re.sub(r"[\[\]]", "", match.group("rest").splitlines()[0]).strip()
        raise IntegrityError(
            f"{match.group('path')}: the shard's records {detail}; run `tfstream verify {manifest.root}` to check "
            f"every shard, and re-run `tfstream preprocess` to rewrite the dataset") from e
    except (tf.errors.DataLossError, tf.errors.FailedPreconditionError) as e:
        # FailedPrecondition: a cardinality assertion (a split with other records than
        # its manifest lists); DataLoss: a record that fails its CRC, or a truncated one.
        if isinstance(e, tf.errors.FailedPreconditionError) and "expected to contain" not in str(e):
            raise
        result = _find_culprits(manifest, splits)
        if result.ok:
            raise
        raise IntegrityError(f"reading split(s) {', '.join(map(repr, splits))} failed ({_tf_summary(e)})\n"
                             f"{result.message()}", result.failed) from e


def check_before_training(manifest: Manifest, config: JobConfig) -> None:
    """The dataset checks that run once before the first epoch (see the module's
    docstring): sizes of every shard the run reads, the validation and eval shards read
    whole (up to `VERIFY_BEFORE_TRAINING_BYTES`), and their first batch parsed.

    Raises:
        IntegrityError: a shard is missing, resized, corrupt, truncated or miscounted.
    """
    t = config.train
    held_out = [s for s in dict.fromkeys((t.validation_split, t.eval_split)) if s]
    check_sizes(manifest, [t.train_split, *held_out]).check()
    total = sum(shard.bytes for split in held_out for shard in manifest.split(split).shards)
    if total <= VERIFY_BEFORE_TRAINING_BYTES:
        verify(manifest, held_out).check()
    else:
        _log.info("splits %s hold %.1f GB: only their sizes and first batch are checked before training; run "
                  "`tfstream verify %s` to check every record", held_out, total / 1e9, manifest.root)
    options = config.reader.for_evaluation()
    for split in held_out:
        with shard_errors_named(manifest, [split]):
            for _ in read(manifest, split, options, shuffle=False).take(1):
                pass
