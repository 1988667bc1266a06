"""One process's part of a split (`pipelines.read.processes`): by file when the shards
deal evenly, by record otherwise; every process takes the same records per epoch, no
record twice."""

import numpy as np
import pytest

from tfstream.pipelines.config import config_from_dict
from tfstream.pipelines.read.processes import ProcessShard
from tfstream.pipelines.read.reader import read
from tfstream.pipelines.write.arrays import write_arrays
from tfstream.testing import job_dict


def _dataset(path, rows, shards):
    """A numeric dataset whose first feature value is the row's number (a record's id)."""
    config = config_from_dict(job_dict("seed_dense.yaml", output={"num_shards": {"train": shards, "eval": 1}}))
    rng = np.random.default_rng(0)
    x = rng.random((rows, 10), dtype=np.float32)
    x[:, 0] = np.arange(rows)
    return write_arrays(config, {"X": x, "y": rng.integers(0, 2, rows)}, str(path))


def _epoch(manifest, process, shuffle):
    ds = read(manifest, "train", batch_size=8, shuffle=shuffle, process=process, shuffle_buffer=64)
    batches = [features["x"][:, 0].numpy() for features, _ in ds]
    assert len(batches) == int(ds.cardinality())  # Keras' step count is the batches given
    return batches


@pytest.mark.parametrize("shuffle", [True, False])
def test_shards_dealt_by_file(tmp_path, shuffle):
    manifest = _dataset(tmp_path / "ds", 6000, 4)
    counts = [s.records for s in manifest.split("train").shards]
    plans = [ProcessShard(i, 2).plan(manifest, "train") for i in range(2)]
    assert not plans[0].by_record and not plans[1].by_record
    assert sorted(plans[0].paths + plans[1].paths) == sorted(manifest.shard_paths("train"))
    assert plans[0].records == plans[1].records == min(p.held for p in plans)
    assert plans[0].left_out == sum(counts) - 2 * plans[0].records <= 0.01 * sum(counts)
    parts = [_epoch(manifest, ProcessShard(i, 2), shuffle) for i in range(2)]
    assert len(parts[0]) == len(parts[1]) and parts[0][-1].size == parts[1][-1].size  # the same steps and shapes
    ids = np.concatenate([np.concatenate(p) for p in parts])
    assert ids.size == len(set(ids.tolist())) == sum(counts) - plans[0].left_out  # no record twice
    assert ProcessShard(0, 2).warning(manifest, "train") is None


@pytest.mark.parametrize("shuffle", [True, False])
def test_too_few_shards_read_by_record(tmp_path, shuffle):
    manifest = _dataset(tmp_path / "ds", 300, 1)
    n = manifest.num_examples("train")
    plans = [ProcessShard(i, 3).plan(manifest, "train") for i in range(3)]
    assert all(p.by_record and p.records == n // 3 and p.left_out == n % 3 for p in plans)
    parts = [_epoch(manifest, ProcessShard(i, 3), shuffle) for i in range(3)]
    assert len({len(p) for p in parts}) == 1 and len({p[-1].size for p in parts}) == 1
    ids = np.concatenate([np.concatenate(p) for p in parts])
    assert ids.size == len(set(ids.tolist())) == n - n % 3
    assert ProcessShard(1, 3).warning(manifest, "train") == (
        "split 'train' has 1 shard(s) for 3 processes: every process reads all of it and keeps one record in 3 (3x "
        "the reading); write it in more shards, a multiple of 3 (output.num_shards: {train: 3} or more), so that "
        "each process reads its own files")


def test_uneven_shards_read_by_record(tmp_path):
    manifest = _dataset(tmp_path / "ds", 300, 3)  # 3 shards for 2 processes: a third of the split left out by file
    assert ProcessShard(0, 2).plan(manifest, "train").by_record
    assert "shards of unequal sizes: dealt to 2 processes, the smallest part would leave" in \
        ProcessShard(0, 2).warning(manifest, "train")


def test_a_process_outside_the_job_is_refused():
    with pytest.raises(ValueError, match=r"process index 2 is not in 0..1 \(of 2 processes\)"):
        ProcessShard(2, 2)
