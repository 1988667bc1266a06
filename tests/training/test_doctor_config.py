"""`tfstream doctor --config C`: reader settings against the model, and against the
dataset's manifest through the memory planner (the limits `tfstream train` enforces)."""

import os

import numpy as np
import pytest

from tfstream.pipelines.manifest import Manifest, ManifestError
from tfstream.pipelines.read.memory import MiB
from tfstream.testing import CONFIGS
from tfstream.training.doctor_config import check_config, check_config_file, key_lines

# The lines of reader.* keys in a config written by _write (see there).
LINES = {"reader": 6, "reader.batch_size": 7, "reader.shuffle_buffer": 8, "reader.cache": 9, "reader.prefetch": 10}


def _config(make_job, model="dense", **reader):
    if model == "lstm":
        return make_job("seed_lstm.yaml", reader=reader)
    return make_job("seed_dense.yaml", reader=reader)


def _manifest(config, records=4_000_000, record_bytes=100) -> Manifest:
    """A large training split, as a manifest alone (the planner reads nothing else)."""
    shard = {"file": "train/toy-00000-of-00001.tfrecord", "records": records, "bytes": records * (record_bytes + 16),
             "record_bytes": records * record_bytes, "max_record_bytes": record_bytes, "sha256": "0" * 64}
    split = {"num_examples": records, "shards": [shard], "statistics": {"features": {}}}
    return Manifest({"schema": config.schema().to_json(), "splits": {"train": split}}, "/data/toy")


def _found(report):
    return [(f.line, f.code, f.severity) for f in report.findings]


@pytest.mark.parametrize("name", sorted(os.listdir(CONFIGS)))
def test_the_shipped_configs_are_clean(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no runs/<name>/dataset here, even after `make demo` in the checkout
    report = check_config_file(os.path.join(CONFIGS, name), None)
    assert report.findings == ()
    assert report.notes[0].startswith("no dataset (runs/") and "the config is checked alone" in report.notes[0]


def test_batch_size_and_prefetch_against_the_model(make_job):
    report = check_config(_config(make_job, batch_size=1024, prefetch=0), None, path="c.yaml", lines=LINES)
    assert _found(report) == [(7, "batch-size", "warning"), (10, "no-prefetch", "warning")]
    assert report.findings[0].what == "reader.batch_size 1,024 is large for a dense model"
    lstm = _config(make_job, "lstm", batch_size=256)
    assert _found(check_config(lstm, None)) == [(None, "batch-size", "warning")]
    bucketed = _config(make_job, "lstm", batch_size=256, max_tokens_per_batch=4096)
    assert _found(check_config(bucketed, None)) == []  # the tokens per batch bound it, not batch_size


def test_a_memory_cache_over_the_budget_would_be_refused(make_job):
    config = _config(make_job, cache="memory", memory_budget_mb=256)
    report = check_config(config, _manifest(config), path="c.yaml", lines=LINES, machine_bytes=64 << 30)
    assert _found(report) == [(9, "cache-in-memory", "error")]
    cache = next(f for f in report.findings if f.code == "cache-in-memory")
    assert cache.what == "reader.cache: tfstream train would refuse to start"
    assert cache.why.startswith("the input pipeline needs about") and "more than reader.memory_budget_mb 256" in cache.why
    assert "the largest part is the cache" in cache.why
    assert report.notes[0].startswith("/data/toy: the input pipeline of split 'train' needs about")


def test_a_memory_cache_over_a_quarter_of_the_machine(make_job):
    config = _config(make_job, cache="memory", shuffle_buffer=1000)
    manifest = _manifest(config, records=1_000_000)  # 95 MiB of records, cached in about 156 MiB
    report = check_config(config, manifest, path="c.yaml", lines=LINES, machine_bytes=256 * MiB)
    assert _found(report) == [(9, "cache-in-memory", "warning")]
    assert "over a quarter of this machine's 256 MB of memory" in report.findings[0].why
    assert _found(check_config(config, manifest, machine_bytes=64 << 30)) == []


def test_a_shuffle_buffer_beyond_what_the_planner_allows(make_job):
    config = _config(make_job, shuffle_buffer=3_000_000, memory_budget_mb=128)
    report = check_config(config, _manifest(config), path="c.yaml", lines=LINES, machine_bytes=64 << 30)
    assert _found(report) == [(8, "shuffle-buffer", "error")]
    assert "lower reader.shuffle_buffer to" in report.findings[0].why
    held = _config(make_job, shuffle_buffer=10_000_000)  # more than the split: held to it, no finding
    assert _found(check_config(held, _manifest(held, records=1000), lines=LINES, machine_bytes=64 << 30)) == []

def test_key_lines_and_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: toy\nreader:\n  batch_size: 4096\nmodel: {type: dense}\n", encoding="utf-8")
    assert key_lines(str(path)) == {"name": 1, "reader": 2, "reader.batch_size": 3, "model": 4, "model.type": 4}
    assert key_lines(str(tmp_path / "missing.yaml")) == {}


def test_with_a_written_dataset(make_job, tmp_path):
    from tfstream.pipelines.write.arrays import write_arrays
    from tfstream.testing import job_dict

    import yaml

    config = make_job("seed_dense.yaml")
    rng = np.random.default_rng(0)
    write_arrays(config, {"X": rng.random((500, 10), dtype=np.float32), "y": rng.integers(0, 2, 500)},
                 str(tmp_path / "ds"))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(job_dict("seed_dense.yaml", reader={"batch_size": 600})), encoding="utf-8")
    report = check_config_file(str(path), str(tmp_path / "ds"))
    assert [(f.code, f.severity) for f in report.findings] == [("batch-size", "warning")]
    assert report.findings[0].line == key_lines(str(path))["reader.batch_size"]
    assert "The 'train' split holds" in report.findings[0].why
    assert "the input pipeline of split 'train' needs about" in report.notes[0]
    with pytest.raises(ManifestError, match="no manifest.json"):
        check_config_file(str(path), str(tmp_path / "nothing"))
