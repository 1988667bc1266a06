"""`write_arrays`: NumPy arrays (memory-mapped) → the same dataset as the Beam pipeline's,
streaming, in one process, in bounded memory."""

import json
import math
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pyarrow.csv as pcsv
import pytest

from test_quarantine import CSV_BAD_ROWS, _lines, _with_cells
from test_remote_fs import _objects, store  # noqa: F401 - a fixture: a Beam file system with object-store rules

from tfstream.pipelines.write.arrays import write_arrays
from tfstream.pipelines.write.beam_pipeline import PreprocessError, preprocess
from tfstream.pipelines.write.sharding import record_hash
from tfstream.pipelines.manifest import load_manifest, quarantine_records
from tfstream.pipelines.shards import read_records, shard_file
from tfstream.pipelines.write.sources import SourceError
from tfstream.transforms.codecs import decode_example

PLACEHOLDER = {"format": "npz", "path": "<arrays>"}


def _quarantine(dataset_dir, manifest_data):
    return quarantine_records(dataset_dir, manifest_data)


def _records(manifest, split):
    import gzip

    out = []
    for path in manifest.shard_paths(split):
        with (gzip.open(path, "rb") if manifest.compression == "gzip" else open(path, "rb")) as f:
            out += [decode_example(r, manifest.schema) for r in read_records(f, path)]
    return out


def _files(root):
    """The dataset's files, each snapshot's id written ``<id>`` (two runs' ids differ)."""
    return sorted(re.sub(r"^snapshots/[^/]+/", "snapshots/<id>/", os.path.relpath(os.path.join(d, f), root))
                  for d, _, fs in os.walk(root) for f in fs)


def _close(a, b, path=""):
    """Statistics equal up to float rounding (the Beam combine merges partial sums in
    another order)."""
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (path, a, b)
    else:
        assert a == b, (path, a, b)


# --------------------------------------------------------------------------- a big memmap


@pytest.fixture(scope="module")
def sorted_memmaps(tmp_path_factory):
    """200,000 flights-like rows, sorted by ``idx``, one .npy file per column, opened
    memory-mapped; 20 rows have a departure delay too large for float32."""
    n = 200_000
    rng = np.random.default_rng(0)
    columns = {
        "idx": np.arange(n),
        "month": np.sort(rng.integers(1, 13, n)),
        "distance": rng.uniform(80, 5000, n),
        "dep_delay": rng.normal(12, 40, n).round(),
        "carrier": rng.choice(np.array(["UA", "AA", "DL", "B6", "EV"]), n),
        "arr_delay": rng.normal(7, 44, n).round(),
    }
    columns["dep_delay"][np.arange(20) * 9973] = 1e39
    folder = tmp_path_factory.mktemp("npy")
    for name, arr in columns.items():
        np.save(folder / f"{name}.npy", arr)
    return columns, {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in columns}


def _wide_job(make_job, **overrides):
    features = [{"name": "idx", "type": "int"}, {"name": "month", "type": "int"},
                {"name": "distance", "type": "float"}, {"name": "dep_delay", "type": "float"},
                {"name": "carrier", "type": "string", "vocab_size": 3}]
    return make_job("flights_dense.yaml", source=PLACEHOLDER, features=features,
                    split={"key": [], "fractions": {"train": 0.8, "validation": 0.1, "eval": 0.1}},
                    validation={"max_bad_fraction": 0.001}, **overrides)


@pytest.mark.slow
def test_a_memmap_is_written_whole_decodes_back_and_streams(sorted_memmaps, make_job, tmp_path):
    src, mapped = sorted_memmaps
    assert isinstance(mapped["distance"], np.memmap)
    out = str(tmp_path / "ds")
    m = write_arrays(_wide_job(make_job), mapped, out, chunk_rows=16384)

    s = m.data["source"]
    assert (s["rows_read"], s["rows_rejected"], s["rows_written"]) == (200_000, 20, 199_980)
    assert s["rejected"] == {"out_of_range:dep_delay": 20}
    assert sum(m.num_examples(split) for split in m.split_names) == 199_980
    assert s["rejected_examples"]["out_of_range:dep_delay"].startswith(
        "arrays: row 1: column 'dep_delay': 1e+39 is outside the float32 range")
    assert sorted(r["row"] for r in _quarantine(out, m.data)) == [1 + i * 9973 for i in range(20)]
    assert {f["name"] for f in s["fingerprint"]["files"]} == set(src)
    assert m.data["options"]["arrays"] == {"chunk_rows": 16384}

    # every shard file of the layout Beam writes, and nothing else
    shards = {"train": 8, "validation": 1, "eval": 1}
    assert [f for f in _files(out) if f.endswith(".tfrecord")] == sorted(
        "snapshots/<id>/" + shard_file(split, "flights", i, n, "none") for split, n in shards.items() for i in range(n))
    assert {split: m.data["splits"][split]["num_shards"] for split in m.split_names} == shards

    # the records hold the source values; each shard samples the whole (sorted) source,
    # in source order
    train = m.data["splits"]["train"]["shards"]
    assert max(d["records"] for d in train) < 1.1 * min(d["records"] for d in train)
    for path in m.shard_paths("train"):
        with open(path, "rb") as f:
            idx, hashes = [], []
            for i, record in enumerate(read_records(f, path)):
                row = decode_example(record, m.schema)
                idx.append(row["idx"])
                hashes.append(record_hash(record, m.name.encode()))
                if i % 97 == 0:
                    j = row["idx"]
                    assert row["month"] == src["month"][j] and row["carrier"] == src["carrier"][j]
                    assert row["distance"] == np.float32(src["distance"][j])
                    assert row["dep_delay"] == np.float32(src["dep_delay"][j])
                    assert row["late"] == int(src["arr_delay"][j] > 15)
        # the shard spans the whole sorted source, stored in its hash order (as Beam's writer
        # stores it), not in the source order: the reader's block shuffle relies on that
        assert min(idx) < 2_000 and max(idx) > 198_000 and hashes == sorted(hashes)
        rises = sum(b > a for a, b in zip(idx, idx[1:]))
        assert 0.4 < rises / (len(idx) - 1) < 0.6  # source order is gone

    # statistics: over all splits, the written rows' mean
    written = src["dep_delay"] < 1e30
    n_total = sum(m.data["splits"][split]["statistics"]["features"]["distance"]["count"] for split in m.split_names)
    mean = sum(m.data["splits"][split]["statistics"]["features"]["distance"]["mean"] * m.num_examples(split)
               for split in m.split_names) / n_total
    assert n_total == 199_980 and math.isclose(mean, src["distance"][written].mean(), rel_tol=1e-9)
    assert [t for t, _ in m.data["splits"]["train"]["statistics"]["features"]["carrier"]["vocabulary"]] and \
        len(m.data["splits"]["train"]["statistics"]["features"]["carrier"]["vocabulary"]) == 3

    # and train from the stream: the reader takes it like any tfstream dataset
    from tfstream.pipelines.read.reader import read

    features, label = next(iter(read(out, "train", batch_size=512, seed=0)))
    assert label.shape == (512,) and set(features) == {"idx", "month", "distance", "dep_delay", "carrier"}


_MEMORY_CHILD = textwrap.dedent("""
    import json, resource, sys
    import numpy as np
    from tfstream.pipelines.write.arrays import write_arrays
    from tfstream.pipelines.config import config_from_dict

    folder, out, job = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    arrays = {"X": np.load(folder + "/X.npy", mmap_mode="r"), "y": np.load(folder + "/y.npy", mmap_mode="r")}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = write_arrays(config_from_dict(job), arrays, out, chunk_rows=1024)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"grew_kb": after - before, "written": m.data["source"]["rows_written"]}))
""")


@pytest.mark.slow
def test_peak_memory_grows_by_far_less_than_the_arrays(tmp_path):
    """A 245 MB memmap of sequences, (30000, 32, 64) float32, written 1,024 rows (8 MB) at
    a time: the writer's peak resident memory grows by a fraction of the array's size.
    (Without releasing the pages read, it grows by the whole array: mapped pages count.)"""
    from tfstream.testing import job_dict

    rows, steps, dim = 30_000, 32, 64
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float32, shape=(rows, steps, dim))
    rng = np.random.default_rng(0)
    for start in range(0, rows, 2000):
        X[start:start + 2000] = rng.standard_normal((2000, steps, dim), dtype=np.float32)
    X.flush()
    nbytes = X.nbytes
    del X
    np.save(tmp_path / "y.npy", np.arange(rows) % 10)
    job = job_dict("digits_lstm.yaml", source={**PLACEHOLDER, "lengths_key": None},
                   features=[{"name": "x", "type": "sequence", "column": "X", "dim": dim}])
    result = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(tmp_path), str(tmp_path / "ds"),
                             json.dumps(job)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["written"] == rows
    assert report["grew_kb"] * 1024 < nbytes / 5, (report, nbytes)


# --------------------------------------------------------------------------- same as Beam


def _flights_arrays(flights_csv):
    table = pcsv.read_csv(flights_csv)
    out = {}
    for name in ("year", "month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "arr_delay", "distance",
                 "carrier", "flight", "origin", "dest"):
        column = table.column(name)  # nulls become NaN
        out[name] = column.to_numpy().astype(str) if str(column.type) == "string" else column.to_numpy()
    out["distance"] = out["distance"].astype(np.float64)
    out["distance"][::97] = np.nan  # imputed: two passes
    out["month"] = out["month"].astype(np.float64)
    out["month"][[5, 500]] = 2.5  # rejected: not an integer
    return out


def test_the_same_dataset_as_the_beam_pipeline(flights_csv, make_job, tmp_path):
    arrays = _flights_arrays(flights_csv)
    npz = str(tmp_path / "flights.npz")
    np.savez(npz, **arrays)
    features = []
    for f in make_job("flights_dense.yaml").to_json()["features"]:
        f = {k: v for k, v in f.items() if v not in (None, (), [], "error", "truncate") and k != "oov_buckets"}
        if f["name"] == "dep_delay":
            f["on_nan"] = "drop"  # a NaN: missing, or not finite
        if f["name"] == "distance":
            f.update(on_missing="impute", on_nan="impute")
        if f["name"] == "carrier":
            f.update(vocab_size=3, oov_buckets=2)
        features.append(f)
    overrides = dict(features=features, validation={"max_bad_fraction": 0.05},
                     output={"num_shards": {"train": 3, "validation": 1, "eval": 1}, "compression": "gzip"})
    beam = preprocess(make_job("flights_dense.yaml", source={"format": "npz", "path": npz}, **overrides),
                      output_dir=str(tmp_path / "beam"))
    ours = write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER, **overrides),
                        dict(np.load(npz)), str(tmp_path / "arrays"))

    assert _files(tmp_path / "beam") == _files(tmp_path / "arrays")  # shards, quarantine, TFDS metadata
    b, a = beam.data["source"], ours.data["source"]
    for key in ("rows_read", "rows_written", "rows_dropped", "rows_rejected", "dropped", "rejected"):
        assert a[key] == b[key], key
    assert [q.split("/", 2)[2] for q in a["quarantine"]] == [q.split("/", 2)[2] for q in b["quarantine"]]
    assert b["rows_dropped"] > 0 and b["rows_rejected"] > 0
    assert a["rejected_examples"] == {k: v.replace(os.path.basename(npz), "arrays")
                                     for k, v in b["rejected_examples"].items()}
    assert ours.data["schema"] == beam.data["schema"]
    for split in beam.split_names:
        assert ours.num_examples(split) == beam.num_examples(split)
        _close(ours.data["splits"][split]["statistics"], beam.data["splits"][split]["statistics"], split)
        key = lambda r: (r["month"], r["day"], r["sched_dep_time"], r["carrier"], r["dest"], r["distance"])
        assert sorted(_records(ours, split), key=key) == sorted(_records(beam, split), key=key)
        # both pick a record's shard by the same keyed hash: the same records in each shard
        for a, b in zip(ours.split(split).shards, beam.split(split).shards):
            assert (a.file.split("/", 2)[2], a.records, a.record_bytes) == (b.file.split("/", 2)[2], b.records,
                                                                           b.record_bytes)
    train = ours.data["splits"]["train"]["statistics"]["features"]
    assert train["distance"]["impute"] == "mean"
    assert train["distance"]["missing"] + train["distance"]["non_finite"] > 0
    assert len(train["carrier"]["vocabulary"]) == 3 and train["carrier"]["oov_buckets"] == 2

    def quarantined(out, m, name):
        return sorted((r["row"], r["action"], r["reason"], r["column"], r["message"].replace(name, "arrays"),
                       json.dumps(r["values"], sort_keys=True)) for r in _quarantine(out, m.data))

    assert quarantined(str(tmp_path / "arrays"), ours, "arrays") == quarantined(str(tmp_path / "beam"), beam,
                                                                            os.path.basename(npz))


def test_concatenated_sequences_from_memmaps_as_beam_reads_the_npz(digits_npz, make_job, tmp_path):
    overrides = dict(split={"fractions": {"train": 1.0}}, output={"num_shards": {"train": 2}},
                     train={"validation_split": None, "eval_split": "train"})
    beam = preprocess(make_job("digits_lstm.yaml", source={"path": digits_npz}, **overrides),
                      output_dir=str(tmp_path / "beam"))
    with np.load(digits_npz) as z:
        for name in z.files:
            np.save(tmp_path / f"{name}.npy", z[name])
    mapped = {name: np.load(tmp_path / f"{name}.npy", mmap_mode="r") for name in ("X", "lengths", "y")}
    ours = write_arrays(make_job("digits_lstm.yaml", source={**PLACEHOLDER, "lengths_key": "lengths"},
                                 **overrides), mapped, str(tmp_path / "arrays"), chunk_rows=64)
    assert ours.num_examples("train") == beam.num_examples("train") == 600
    _close(ours.data["splits"]["train"]["statistics"], beam.data["splits"]["train"]["statistics"])
    key = lambda r: (r["digit"], r["mfcc_length"], r["mfcc"].tobytes())
    a, b = sorted(_records(ours, "train"), key=key), sorted(_records(beam, "train"), key=key)
    assert all(x["mfcc"].tobytes() == y["mfcc"].tobytes() and x["digit"] == y["digit"] for x, y in zip(a, b))


def test_to_an_object_store_gzip(store, make_job):  # noqa: F811 - the fixture
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, 300)
    arrays = {"X": rng.normal(size=(lengths.sum(), 13)).astype(np.float32), "lengths": lengths,
              "y": rng.integers(0, 10, 300)}
    job = make_job("digits_lstm.yaml", source={**PLACEHOLDER, "lengths_key": "lengths"},
                   output={"compression": "gzip"})
    m = write_arrays(job, arrays, "memstore://ds", chunk_rows=64)
    assert m.root == "memstore://ds" and sum(m.num_examples(s) for s in m.split_names) == 300
    objects = _objects(store)
    snapshot = f"ds/snapshots/{m.snapshot['id']}"
    assert "ds/manifest.json" in objects and f"{snapshot}/quarantine/rows-00000-of-00001.jsonl" in objects
    assert all(o.startswith(snapshot) or o == "ds/manifest.json" for o in objects), objects
    for split in m.split_names:
        assert len(m.shard_paths(split)) == len(m.data["splits"][split]["shards"])  # sizes checked through the store
        assert all(p.endswith(".tfrecord.gz") for p in m.shard_paths(split))


# --------------------------------------------------------------------------- quarantine


def _string_arrays(lines):
    """CSV lines → one string array per column: values exactly as a CSV source gives them."""
    header = lines[0].split(",")
    cells = [line.split(",") for line in lines[1:]]
    return {name: np.array([row[i] for row in cells], dtype=object) for i, name in enumerate(header)}


def test_each_bad_kind_is_quarantined_with_the_csv_messages(flights_csv, make_job, tmp_path):
    lines = _with_cells(_lines(flights_csv, 400), {row: cells for row, (cells, *_) in CSV_BAD_ROWS.items()})
    out = str(tmp_path / "ds")
    m = write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER, validation={"max_bad_fraction": 0.05}),
                     _string_arrays(lines), out)
    records = {r["row"]: r for r in _quarantine(out, m.data) if r["action"] == "rejected"}
    assert sorted(records) == sorted(CSV_BAD_ROWS)
    for row, (_, reason, column, message) in CSV_BAD_ROWS.items():
        assert (records[row]["file"], records[row]["reason"], records[row]["column"]) == ("arrays", reason, column)
        assert records[row]["message"] == f"arrays: row {row}: {message}"
    src = m.data["source"]
    assert src["rows_written"] + len(_quarantine(out, m.data)) == src["rows_read"] == 400


def test_bad_rows_beyond_the_budget_refuse_the_run_and_keep_the_dataset(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv, 1000)
    bad_rows = [40, 140, 440, 640, 940]
    arrays = _string_arrays(_with_cells(lines, {r: {"distance": "n/a"} for r in bad_rows}))
    out = str(tmp_path / "ds")
    ok = write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER, validation={"max_bad_fraction": 0.01}),
                      arrays, out)
    assert (ok.data["source"]["rows_read"], ok.data["source"]["rows_rejected"]) == (1000, 5)
    strict = make_job("flights_dense.yaml", source=PLACEHOLDER, validation={"max_bad_fraction": 0.001})
    with pytest.raises(PreprocessError) as e:
        write_arrays(strict, arrays, out)
    assert str(e.value).startswith(
        "5 of 1,000 rows (0.50%) break a rule, more than validation.max_bad_fraction 0.001. "
        "Worst: not_a_number:distance x5 (first: arrays: row 40: column 'distance': expected a number, got 'n/a')")
    assert load_manifest(out).data["created_at"] == ok.data["created_at"]
    assert os.path.exists(os.path.join(out, "rejected-run", "manifest.json"))
    assert os.listdir(os.path.join(out, "snapshots")) == [ok.snapshot["id"]]  # the refused run's is gone


def test_drift_against_the_previous_run(flights_csv, make_job, tmp_path, caplog):
    arrays = _string_arrays(_lines(flights_csv, 800))
    out = str(tmp_path / "ds")
    write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER), arrays, out)
    shifted = dict(arrays, distance=np.array([str(float(v) * 3) for v in arrays["distance"]], dtype=object))
    m = write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER), shifted, out)
    assert [(f["feature"], f["kind"]) for f in m.data["drift"]["findings"]] == [("distance", "mean_shift")]
    with pytest.raises(PreprocessError, match=r"the statistics drifted from .*\(validation.drift.on_drift: error\): "
                                              r"distance: mean_shift"):
        write_arrays(make_job("flights_dense.yaml", source=PLACEHOLDER, validation={"drift": {"on_drift": "error"}}),
                     arrays, out)


def test_sequence_rules_name_the_row(make_job, tmp_path, monkeypatch, caplog):
    rng = np.random.default_rng(0)
    lengths = np.array([4, 0, 30, 5, 6, 3])
    X = rng.normal(size=(lengths.sum(), 13)).astype(np.float32)
    X[4 + 30 + 2, 5] = np.nan  # in the 4th sequence
    features = [{"name": "mfcc", "type": "sequence", "column": "X", "dim": 13, "max_length": 10}]
    job = make_job("digits_lstm.yaml", source=PLACEHOLDER, features=features, validation={"max_bad_fraction": 0.5})
    out = str(tmp_path / "ds")
    monkeypatch.setattr("tfstream.pipelines.write.arrays._PROGRESS_SECONDS", -1.0)  # log every chunk
    caplog.set_level("INFO", logger="tfstream.pipelines.write.arrays")
    m = write_arrays(job, {"X": X, "lengths": lengths, "y": np.arange(6)}, out, chunk_rows=4)
    assert "write_arrays write: 4 of 6 rows" in caplog.text and "write_arrays write: 6 of 6 rows" in caplog.text
    records = {r["row"]: r for r in _quarantine(out, m.data)}
    assert records[2]["message"] == "arrays: row 2: column 'X': the sequence is empty"
    assert records[4]["values"]["X"] == "<array of shape (5, 13)>"
    assert sorted(records) == [2, 4]
    assert sum(m.data["splits"][s]["statistics"]["features"]["mfcc"]["truncated"] for s in m.split_names) == 1


# --------------------------------------------------------------------------- bad input


def test_missing_and_misshapen_arrays_are_refused_before_writing(make_job, tmp_path, caplog):
    job = make_job("digits_lstm.yaml", source=PLACEHOLDER)
    out = str(tmp_path / "ds")
    with pytest.raises(SourceError, match=r"arrays: missing required array\(s\) \['y'\]; the arrays given are "
                                          r"\['X', 'lengths'\]"):
        write_arrays(job, {"X": np.zeros((9, 13)), "lengths": np.array([4, 5])}, out)
    with pytest.raises(SourceError, match=r"arrays: array 'X' has 10 rows; expected sum\(lengths\) = 9"):
        write_arrays(job, {"X": np.zeros((10, 13)), "lengths": np.array([4, 5]), "y": np.array([0, 1])}, out)
    flat = make_job("digits_lstm.yaml", source={**PLACEHOLDER, "lengths_key": None})
    with pytest.raises(SourceError, match=r"arrays: sequence array 'X' has shape \(9, 13\); without `lengths_key`"):
        write_arrays(flat, {"X": np.zeros((9, 13)), "y": np.zeros(9)}, out)
    with pytest.raises(ValueError, match=r"chunk_rows: expected >= 1, got 0"):
        write_arrays(job, {}, out, chunk_rows=0)
    assert not os.path.exists(out)


def test_a_config_for_another_source_warns_that_its_files_are_not_read(flights_csv, make_job, tmp_path, caplog):
    arrays = _string_arrays(_lines(flights_csv, 50))
    m = write_arrays(make_job("flights_dense.yaml", source={"path": flights_csv}), arrays, str(tmp_path / "ds"))
    assert m.data["source"]["rows_read"] == 50
    assert f"the config's source (csv {flights_csv!r}) is not read" in caplog.text


def _contents(root):
    """Every shard's and the quarantine's bytes, by path (snapshot ids written ``<id>``)."""
    out = {}
    for d, _, names in os.walk(root):
        for f in names:
            rel = re.sub(r"^snapshots/[^/]+/", "snapshots/<id>/", os.path.relpath(os.path.join(d, f), root))
            if "tfrecord" in rel or rel.endswith(".jsonl"):
                with open(os.path.join(d, f), "rb") as fh:
                    out[rel] = fh.read()
    return out


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_the_vectorized_route_writes_what_the_row_by_row_route_writes(make_job, tmp_path, monkeypatch, task):
    """Seed-style arrays take the vectorized route (`_FastRoute`, `encode_examples`); rows
    it cannot vouch for (NaN, inf, beyond float32, unknown classes) take `route_chunk`.
    Shards and quarantine are byte-identical to the row-by-row route's, statistics close."""
    from tfstream.pipelines.write import arrays as arrays_module

    rng = np.random.default_rng(7)
    X = rng.normal(size=(3000, 10)).astype(np.float64)
    X[5, 3], X[17, 0], X[40, 9], X[41, 2], X[99, 1] = np.nan, np.inf, -np.inf, 1e39, -0.0
    if task == "binary":
        y = rng.integers(0, 2, 3000)
        y[12], y[2000] = 2, -1  # outside the classes
        label = {"column": "y", "task": "binary", "num_classes": 2}
    else:
        y = rng.normal(size=3000)
        y[12], y[2000] = np.nan, 1e300
        label = {"column": "y", "task": "regression"}
    from tfstream.pipelines.config import config_from_dict
    from tfstream.testing import job_dict

    data = job_dict("seed_dense.yaml", validation={"max_bad_fraction": 0.5})
    data["label"] = label
    job = config_from_dict(data)
    fast = write_arrays(job, {"X": X, "y": y}, str(tmp_path / "fast"), chunk_rows=700)
    assert arrays_module._FastRoute(job.row_rules(), job.split_plan().router(), (), {"X": X, "y": y}, None).enabled
    monkeypatch.setattr(arrays_module._FastRoute, "_applies", lambda self, columns: False)
    slow = write_arrays(job, {"X": X, "y": y}, str(tmp_path / "slow"), chunk_rows=700)
    a, b = _contents(tmp_path / "fast"), _contents(tmp_path / "slow")
    assert a.keys() == b.keys() and any(k.endswith(".jsonl") for k in a)
    assert a == b
    for split in slow.split_names:
        assert fast.num_examples(split) == slow.num_examples(split)
        _close(fast.data["splits"][split]["statistics"], slow.data["splits"][split]["statistics"], split)
    assert {k: v for k, v in fast.data.items() if k not in ("splits", "created", "snapshot", "run")}.keys() == \
        {k: v for k, v in slow.data.items() if k not in ("splits", "created", "snapshot", "run")}.keys()


@pytest.mark.parametrize("compression,width", [("none", 10), ("gzip", 10), ("none", 1000)])
def test_the_same_arrays_land_in_the_same_splits_from_an_npz_and_from_write_arrays(make_job, tmp_path, compression,
                                                                                   width):
    """Without split key columns an array row is keyed by its row number alone: the seed's
    arrays give the same shards, byte for byte, through `preprocess` of an .npz (Beam)
    and through `write_arrays` (the issue's example: 8,026 against 8,008 train rows).
    With rows of 1000 values (12 MB of records) at ``target_shard_mb: 1``, both plan the
    same shard counts from the data, more than round(8 x fraction)."""
    rng = np.random.default_rng(0)
    X, y = rng.random((3000, width), dtype=np.float32), rng.integers(0, 2, 3000)
    X[5, 2] = np.nan  # one rejected row, quarantined the same way by both
    np.savez(tmp_path / "toy.npz", X=X, y=y)
    overrides = dict(output={"compression": compression, **({"target_shard_mb": 1} if width > 10 else {})},
                     validation={"max_bad_fraction": 0.01},
                     features=[{"name": "x", "type": "float", "column": "X", "shape": [width]}])
    beam = preprocess(make_job("seed_dense.yaml", source={"path": str(tmp_path / "toy.npz")}, **overrides),
                      output_dir=str(tmp_path / "beam"))
    ours = write_arrays(make_job("seed_dense.yaml", source=PLACEHOLDER, **overrides), {"X": X, "y": y},
                        str(tmp_path / "arrays"))
    shards = lambda root: {k: v for k, v in _contents(root).items() if "tfrecord" in k}
    assert shards(tmp_path / "beam") == shards(tmp_path / "arrays")
    assert {s: ours.num_examples(s) for s in ours.split_names} == {s: beam.num_examples(s) for s in beam.split_names}
    assert sum(ours.num_examples(s) for s in ours.split_names) == 2999
    sizing = lambda m: {s: (m.data["splits"][s]["num_shards"], m.data["splits"][s]["shard_sizing"])
                        for s in m.split_names}
    counts = sizing(ours)
    assert counts == sizing(beam)
    if width > 10:
        assert {s: n for s, (n, _) in counts.items()} == {"train": 10, "eval": 3}  # round(8 x fraction): 6 and 2
        assert {sizing["source"] for _, sizing in counts.values()} == {"estimate"}


def test_records_that_share_a_hash_are_ordered_by_their_bytes_by_both_writers(make_job, tmp_path, monkeypatch):
    """A 64-bit hash can collide: both writers then order the records by their bytes, so
    the shards stay byte-identical (forced here: every record gets one of two hashes)."""
    import tfstream.pipelines.write.array_shards as array_shards
    import tfstream.pipelines.write.sharding as sharding

    def few_hashes(buffer, offsets, key):
        return (np.arange(len(offsets) - 1) % 2).astype(np.uint64) * np.uint64(3)

    monkeypatch.setattr(sharding, "record_hashes", few_hashes)
    monkeypatch.setattr(array_shards, "record_hashes", few_hashes)
    rng = np.random.default_rng(1)
    X, y = rng.random((500, 10), dtype=np.float32), rng.integers(0, 2, 500)
    np.savez(tmp_path / "toy.npz", X=X, y=y)
    preprocess(make_job("seed_dense.yaml", source={"path": str(tmp_path / "toy.npz")}),
                      output_dir=str(tmp_path / "beam"))
    ours = write_arrays(make_job("seed_dense.yaml", source=PLACEHOLDER), {"X": X, "y": y}, str(tmp_path / "arrays"))
    shards = lambda root: {k: v for k, v in _contents(root).items() if "tfrecord" in k}
    assert shards(tmp_path / "beam") == shards(tmp_path / "arrays")
    filled = 0
    for path in ours.shard_paths("train"):  # a shard holds one hash (shard = hash % n): ties only
        with open(path, "rb") as f:
            records = list(read_records(f, path))
        assert records == sorted(records)
        filled += bool(records)
    assert filled == 2
