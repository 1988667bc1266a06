"""Shard counts from the data: `shard_plan` (output.num_shards, else the source's size at
output.target_shard_mb a shard, never below round(8 x fraction)) and `source_size` (rows
and record bytes per format, measured without reading the source)."""

import bz2
import gzip
import io
import os
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from test_remote_fs import store  # noqa: F401 - a fixture: a Beam file system with object-store rules

from tfstream.pipelines.config import ConfigError, config_from_dict
from tfstream.pipelines.manifest import Manifest, ManifestError
from tfstream.pipelines.write import source_size
from tfstream.pipelines.write.shard_plan import default_num_shards, plan_shards, shard_count
from tfstream.pipelines.write.source_size import SourceSize, _gzip_size, measure_arrays, measure_source
from tfstream.pipelines.write.sources import resolve_source_paths
from tfstream.transforms.example_encoder import encode_examples_buffer, rows_to_columns
from tfstream.transforms.validation import RowError, convert_row

MiB = 2**20
TOKENS = [f"{i:03d}-" + "abcdefghij" * (5 + i % 20) for i in range(100)]  # 55 to 245 characters


def _job(path, fmt="csv", *, target=1, fractions=None, num_shards=None, **source):
    return config_from_dict({
        "name": "sized",
        "source": {"format": fmt, "path": str(path), **source},
        "features": [{"name": "x", "type": "float", "columns": ["x0", "x1", "x2", "x3"]},
                     {"name": "note", "type": "string"}],
        "label": {"column": "y", "task": "binary", "num_classes": 2},
        "model": {"type": "dense"},
        "split": {"fractions": fractions or {"train": 0.8, "eval": 0.2}},
        "output": {"target_shard_mb": target, "num_shards": num_shards or {}},
    })


def _table(n, seed=0):
    rng = np.random.default_rng(seed)
    columns = {f"x{i}": rng.normal(size=n).round(6) for i in range(4)}
    columns["note"] = np.array(TOKENS)[rng.integers(0, len(TOKENS), n)]
    columns["y"] = rng.integers(0, 2, n)
    return pa.table(columns)


def _csv_bytes(table):
    out = io.BytesIO()
    pcsv.write_csv(table, out)
    return out.getvalue()


def _true_record_bytes(table, job):
    """The mean framed size of every valid row's record: what the sample estimates."""
    rules, schema = job.row_rules(), job.schema()
    rows = []
    for raw in table.to_pylist():
        try:
            row, _ = convert_row({k: str(v) for k, v in raw.items()}, rules)
        except RowError:
            continue
        rows.append(row)
    _, offsets = encode_examples_buffer(rows_to_columns(rows, schema), schema, len(rows))
    return (int(offsets[-1]) + 16 * len(rows)) / len(rows)


# --------------------------------------------------------------------------- the plan


def test_the_count_is_the_estimate_over_the_target_never_below_the_old_default():
    assert shard_count(50 * 2**30, 128, 0.8) == 400  # a 50 GiB split: hundreds of shards
    assert shard_count(50 * 2**30 + 1, 128, 0.8) == 401
    assert shard_count(10 * MiB, 1, 0.5) == 10
    assert shard_count(30 * MiB, 128, 0.8) == 6 == default_num_shards(0.8)  # small: as before
    assert shard_count(0, 128, 0.05) == 1
    assert shard_count(2**50, 1, 1.0) == 10000  # output.num_shards' bound


class _Measure:
    def __init__(self, size):
        self.size, self.calls = size, 0

    def __call__(self):
        self.calls += 1
        return self.size


def test_num_shards_in_the_config_wins_and_the_others_follow_the_estimate(tmp_path):
    measure = _Measure(SourceSize(rows=1_000_000, rows_exact=False, record_bytes=100.0))  # 95.4 MiB
    plan = plan_shards(_job(tmp_path / "a.csv", target=4, num_shards={"train": 3}), measure)
    assert plan["train"] == {"num_shards": 3, "source": "config", "target_shard_mb": 4, "estimated_rows": 800_000,
                             "estimated_bytes": 80_000_000, "rows_exact": False}
    assert plan["eval"] == {"num_shards": 5, "source": "estimate", "target_shard_mb": 4, "estimated_rows": 200_000,
                            "estimated_bytes": 20_000_000, "rows_exact": False}  # ceil(19.07 MiB / 4 MiB)
    assert measure.calls == 1


def test_nothing_is_measured_when_the_config_names_every_split(tmp_path, caplog):
    measure = _Measure(None)
    plan = plan_shards(_job(tmp_path / "a.csv", num_shards={"train": 2, "eval": 1}), measure)
    assert measure.calls == 0
    assert plan == {"train": {"num_shards": 2, "source": "config"}, "eval": {"num_shards": 1, "source": "config"}}
    assert "output.target_shard_mb is ignored: output.num_shards names every split" in caplog.text  # set, unused
    caplog.clear()
    job = config_from_dict({**_job(tmp_path / "a.csv").to_json(),
                            "output": {"num_shards": {"train": 2, "eval": 1}}})  # not set: no warning
    assert plan_shards(job, measure) == plan and "ignored" not in caplog.text


def test_a_small_source_keeps_the_old_default_counts(tmp_path):
    measure = _Measure(SourceSize(rows=300_000, rows_exact=True, record_bytes=216.0))  # the flights demo: 62 MiB
    job = _job(tmp_path / "a.npz", "npz", target=128, fractions={"train": 0.8, "validation": 0.1, "eval": 0.1})
    plan = plan_shards(job, measure)
    assert {s: (p["num_shards"], p["source"]) for s, p in plan.items()} == \
        {"train": (6, "default"), "validation": (1, "default"), "eval": (1, "default")}


def test_without_a_valid_sampled_row_the_default_applies(tmp_path):
    plan = plan_shards(_job(tmp_path / "a.csv"), _Measure(SourceSize(rows=10**9, rows_exact=False,
                                                                      record_bytes=None)))
    assert plan["train"] == {"num_shards": 6, "source": "default", "target_shard_mb": 1,
                             "estimated_rows": 800_000_000, "rows_exact": False}


def test_target_shard_mb_is_bounded():
    with pytest.raises(ConfigError, match=r"^output.target_shard_mb: expected 1..4096, got 5000; one worker writes"):
        _job("a.csv", target=5000)
    with pytest.raises(ConfigError, match=r"^output.target_shard_mb: expected 1..4096, got 0$"):
        _job("a.csv", target=0)


# --------------------------------------------------------------------------- measuring sources


@pytest.fixture(scope="module")
def table():
    return _table(20_000)  # about 3.8 MB of CSV


def _write_csv(table, folder, kind):
    text = _csv_bytes(table)
    path = os.path.join(folder, {"plain": "t.csv", "gz": "t.csv.gz", "bz2": "t.csv.bz2", "zip": "t.csv.zip"}[kind])
    if kind == "plain":
        open(path, "wb").write(text)
    elif kind == "gz":
        open(path, "wb").write(gzip.compress(text))
    elif kind == "bz2":
        open(path, "wb").write(bz2.compress(text))
    else:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("t.csv", text)
    return path


@pytest.mark.parametrize("kind", ["plain", "gz", "bz2", "zip"])
def test_a_csv_is_measured_from_its_size_and_its_first_rows(table, tmp_path, kind):
    job = _job(_write_csv(table, str(tmp_path), kind))
    size = measure_source(resolve_source_paths(job.source), job)
    assert not size.rows_exact
    assert abs(size.rows - 20_000) / 20_000 < 0.03, size  # the first rows are like the others
    assert abs(size.record_bytes - _true_record_bytes(table, job)) / size.record_bytes < 0.03
    assert measure_source(resolve_source_paths(job.source), job) == size  # the same every time


def test_a_short_csv_is_counted_exactly(tmp_path):
    small = _table(700)
    for kind in ("plain", "gz", "bz2", "zip"):
        job = _job(_write_csv(small, str(tmp_path), kind))
        size = measure_source(resolve_source_paths(job.source), job)
        assert (size.rows, size.rows_exact) == (700, True), kind
        assert size.record_bytes == pytest.approx(_true_record_bytes(small, job))


def test_several_csv_files_and_gzip_members_add_up(table, tmp_path):
    text = _csv_bytes(table)
    header, _, body = text.partition(b"\n")
    lines = body.splitlines(keepends=True)
    for i in range(3):  # three files of a third each, the last of two gzip members (cat a.gz b.gz)
        part = header + b"\n" + b"".join(lines[i::3])
        if i < 2:
            open(tmp_path / f"p{i}.csv.gz", "wb").write(gzip.compress(part))
        else:
            half = len(part) // 2
            cut = part.index(b"\n", half) + 1
            open(tmp_path / f"p{i}.csv.gz", "wb").write(gzip.compress(part[:cut]) + gzip.compress(part[cut:]))
    job = _job(tmp_path / "p*.csv.gz")
    size = measure_source(resolve_source_paths(job.source), job)
    assert abs(size.rows - 20_000) / 20_000 < 0.05, size


def test_remote_files_are_measured_as_local_ones(table, store, tmp_path):  # noqa: F811 - the fixture
    """Sizes from the file system's metadata, and the first rows read through Beam."""
    for kind in ("plain", "gz", "bz2", "zip"):
        local = _write_csv(table, store, kind)
        job, remote = _job(local), _job("memstore://" + os.path.basename(local))
        assert measure_source(resolve_source_paths(remote.source), remote) == \
            measure_source(resolve_source_paths(job.source), job), kind
    pq.write_table(table, os.path.join(store, "t.parquet"))
    np.savez(os.path.join(store, "t.npz"), **{c: table[c].to_numpy().astype("U" if c == "note" else None)
                                              for c in table.column_names})
    for name, fmt in (("t.parquet", "parquet"), ("t.npz", "npz")):
        remote = _job("memstore://" + name, fmt)
        assert measure_source(resolve_source_paths(remote.source), remote).rows == 20_000


def test_gzip_sizes_past_4_gib_and_of_several_members():
    assert _gzip_size(300 * MiB, 60 * MiB, 280e6) == 300 * MiB  # ISIZE is the size
    assert _gzip_size(300 * MiB, 60 * MiB, 5e9) == 300 * MiB + 2**32  # the guess says: once around
    assert _gzip_size(100 * MiB, 900 * MiB, 4.5e9) == 100 * MiB + 2**32  # ISIZE below the compressed size
    assert _gzip_size(40_000, 2 * MiB, 9e6) == 9_000_000  # bgzip: the last member's size says nothing


def test_parquet_and_npz_rows_are_exact(table, tmp_path):
    pq.write_table(table, tmp_path / "a.parquet", row_group_size=5000)
    pq.write_table(table.slice(0, 3000), tmp_path / "b.parquet")
    job = _job(tmp_path / "*.parquet", "parquet")
    size = measure_source(resolve_source_paths(job.source), job)
    assert (size.rows, size.rows_exact) == (23_000, True)
    assert size.record_bytes == pytest.approx(_true_record_bytes(table, job), rel=0.03)

    arrays = {"x0": table["x0"].to_numpy(), "x1": table["x1"].to_numpy(), "x2": table["x2"].to_numpy(),
              "x3": table["x3"].to_numpy(), "note": table["note"].to_numpy().astype("U"), "y": table["y"].to_numpy()}
    np.savez(tmp_path / "a.npz", **arrays)
    np.savez_compressed(tmp_path / "b.npz", **{k: v[:3000] for k, v in arrays.items()})
    job = _job(tmp_path / "*.npz", "npz")
    size = measure_source(resolve_source_paths(job.source), job)
    assert (size.rows, size.rows_exact) == (23_000, True)
    # the same arrays given to write_arrays measure the same: the same sample, the same rows
    assert measure_arrays(job, {k: np.concatenate([v, v[:3000]]) for k, v in arrays.items()}, None) == size


def test_concatenated_sequences_are_measured_from_their_lengths(tmp_path):
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 40, 2500)
    X = rng.normal(size=(int(lengths.sum()), 13)).astype(np.float32)
    y = rng.integers(0, 10, 2500)
    np.savez(tmp_path / "d.npz", X=X, y=y, lengths=lengths)
    job = config_from_dict({
        "name": "seq", "source": {"format": "npz", "path": str(tmp_path / "d.npz"), "lengths_key": "lengths"},
        "features": [{"name": "mfcc", "type": "sequence", "column": "X", "dim": 13}],
        "label": {"column": "y", "task": "multiclass", "num_classes": 10}, "model": {"type": "lstm"}})
    size = measure_source(resolve_source_paths(job.source), job)
    assert (size.rows, size.rows_exact) == (2500, True)
    head = lengths[:1000]  # each step of 13 float32 values, and some framing
    assert 52 * head.mean() < size.record_bytes < 52 * head.mean() + 80
    assert measure_arrays(job, {"X": X, "y": y}, lengths) == size


# --------------------------------------------------------------------------- writing


def test_a_split_of_several_target_sizes_gets_shards_of_about_the_target(tmp_path):
    """About 15 MB of records at 1 MiB a shard (a Beam run of 5 s): more shards than
    round(8 x fraction), each near, and under, the target; the estimate within 3% of
    what was written."""
    from tfstream.pipelines.write.beam_pipeline import preprocess

    table = _table(70_000, seed=1)
    path = tmp_path / "big.csv"
    path.write_bytes(_csv_bytes(table) + b"1,2,3,x,t,0\n")  # one row rejected (x is not a number)
    job = _job(path, fractions={"train": 0.9, "eval": 0.1})
    job = config_from_dict({**job.to_json(), "validation": {"max_bad_fraction": 0.001}})
    manifest = preprocess(job, output_dir=str(tmp_path / "dataset"))
    for split, default in (("train", 7), ("eval", 1)):
        data = manifest.data["splits"][split]
        sizing = data["shard_sizing"]
        assert sizing["source"] == "estimate" and sizing["target_shard_mb"] == 1
        written = sum(s["record_bytes"] + 16 * s["records"] for s in data["shards"])
        assert abs(sizing["estimated_bytes"] - written) / written < 0.03
        assert data["num_shards"] == -(-sizing["estimated_bytes"] // MiB) > default
        sizes = [(s["record_bytes"] + 16 * s["records"]) / MiB for s in data["shards"]]
        assert all(0.75 < s < 1.05 for s in sizes), sizes
        assert manifest.split(split).shard_sizing.source == "estimate"
    assert [manifest.data["splits"][s]["num_shards"] for s in ("train", "eval")] == [14, 2]


# --------------------------------------------------------------------------- the manifest


def test_the_manifest_names_a_malformed_shard_sizing_and_reads_old_manifests(tmp_path):
    schema = {"features": [{"name": "x", "kind": "numeric", "dtype": "float32"}],
              "label": {"name": "y", "task": "regression"}}
    old = Manifest({"schema": schema, "splits": {"train": {"num_examples": 0}}}, str(tmp_path))
    assert old.split("train").shard_sizing is None
    sized = {"source": "estimate", "target_shard_mb": 128, "estimated_rows": 10, "estimated_bytes": 2000,
             "rows_exact": True}
    m = Manifest({"schema": schema, "splits": {"train": {"shard_sizing": sized}}}, str(tmp_path))
    assert m.split("train").shard_sizing.estimated_bytes == 2000
    for bad, message in ((dict(sized, source="guess"), r"splits.train.shard_sizing.source: expected one of"),
                         (dict(sized, rows_exact=1), r"splits.train.shard_sizing.rows_exact: expected true or false"),
                         (dict(sized, estimated_bytes="2k"), r"shard_sizing.estimated_bytes: expected an integer")):
        with pytest.raises(ManifestError, match=message):
            Manifest({"schema": schema, "splits": {"train": {"shard_sizing": bad}}}, str(tmp_path))


def test_the_sample_is_the_first_rows_only(tmp_path, monkeypatch):
    """A large CSV is not read: the sample stops after its first rows (and 1 MiB of
    text at most, for a compressed file's ratio)."""
    big = _csv_bytes(_table(1000)) + _csv_bytes(_table(60_000)).partition(b"\n")[2]
    path = tmp_path / "big.csv.gz"
    path.write_bytes(gzip.compress(big))
    produced = []
    real = source_size._Decompressed.readinto

    def counting(self, buffer):
        n = real(self, buffer)
        produced.append(n)
        return n

    monkeypatch.setattr(source_size._Decompressed, "readinto", counting)
    job = _job(path)
    size = measure_source(resolve_source_paths(job.source), job)
    assert sum(produced) < (1 << 20) + (1 << 16) < len(big) / 5
    assert abs(size.rows - 61_000) / 61_000 < 0.03
