"""Splits given by the source: per file (`source.splits`), per row (`split.column`), and
one of them carved by the hash (`split.carve`), through `preprocess` (Beam, the
DirectRunner) and `write_arrays`."""

import csv
import json
import os

import numpy as np
import pytest
from test_arrays import _contents

from tfstream.pipelines.config import ConfigError, config_from_dict
from tfstream.pipelines.manifest import quarantine_records
from tfstream.pipelines.shards import read_records
from tfstream.pipelines.write.arrays import write_arrays
from tfstream.pipelines.write.beam_pipeline import PreprocessError, preprocess
from tfstream.pipelines.write.shard_plan import default_num_shards
from tfstream.pipelines.write.sources import SourceError, resolve_source_paths, resolve_split_files
from tfstream.transforms.codecs import decode_example
from tfstream.transforms.split import Splitter

FEATURES = [{"name": "id", "type": "int"}, {"name": "x", "type": "float"}]
LABEL = {"column": "y", "task": "binary", "num_classes": 2}


def _job(source, **more):
    return config_from_dict({"name": "given", "source": source, "features": FEATURES, "label": LABEL, **more})


def _ids(manifest, split):
    """The ``id`` of every record of a split."""
    out = []
    for path in manifest.shard_paths(split):
        with open(path, "rb") as f:
            out += [int(decode_example(r, manifest.schema)["id"]) for r in read_records(f, path)]
    return sorted(out)


def _write(path, fmt, ids, extra=None):
    """A source file of rows ``id, x, y`` (and ``extra`` columns) in ``fmt``."""
    rng = np.random.default_rng(int(ids[0]))
    columns = {"id": np.asarray(ids, dtype=np.int64), "x": rng.random(len(ids)).round(4),
               "y": rng.integers(0, 2, len(ids)), **(extra or {})}
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(list(columns))
            writer.writerows(zip(*(c.tolist() if hasattr(c, "tolist") else c for c in columns.values())))
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), path)
    else:
        np.savez(path, **{k: np.asarray(v) for k, v in columns.items()})
    return path


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["csv", "parquet", "npz"])
def test_each_file_goes_to_its_given_split(tmp_path, fmt):
    """Benchmark archives come as train and test files: every row of a file lands in its
    file's split, whatever the hash, and the manifest, the fingerprint and the TFDS
    metadata name the given splits."""
    data = tmp_path / "data"
    data.mkdir()
    _write(str(data / f"a_TRAIN.{fmt}"), fmt, range(0, 300))
    _write(str(data / f"b_TRAIN.{fmt}"), fmt, range(1000, 1200))
    _write(str(data / f"c_TEST.{fmt}"), fmt, range(5000, 5100))
    job = _job({"format": fmt, "splits": {"train": str(data / f"*_TRAIN.{fmt}"),
                                          "test": [str(data / f"c_TEST.{fmt}")]}})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert m.split_names == ["train", "test"]
    assert _ids(m, "train") == [*range(0, 300), *range(1000, 1200)]
    assert _ids(m, "test") == list(range(5000, 5100))
    files = m.data["source"]["fingerprint"]["files"]
    assert [(f["name"], f["split"]) for f in files] == [
        (f"a_TRAIN.{fmt}", "train"), (f"b_TRAIN.{fmt}", "train"), (f"c_TEST.{fmt}", "test")]
    for split, data_ in m.data["splits"].items():
        assert data_["fraction"] is None and data_["given_split"] == split
    # the default shard counts follow each split's share of the source's bytes
    total = sum(f["bytes"] for f in files)
    for split in ("train", "test"):
        share = sum(f["bytes"] for f in files if f["split"] == split) / total
        assert len(m.split(split).shards) == default_num_shards(share)
    info = json.load(open(tmp_path / "ds" / "dataset_info.json"))
    assert [s["name"] for s in info["splits"]] == ["train", "test"]


@pytest.mark.slow
def test_a_validation_split_carved_out_of_the_given_train_files(tmp_path):
    """`split.carve` hash-splits the rows of one given split by the usual key (here the
    file's name and the row number); the other given splits are left whole."""
    _write(str(tmp_path / "a_TRAIN.csv"), "csv", range(0, 1500))
    _write(str(tmp_path / "c_TEST.csv"), "csv", range(5000, 5200))
    job = _job({"format": "csv", "splits": {"train": str(tmp_path / "*_TRAIN.csv"),
                                            "test": str(tmp_path / "c_TEST.csv")}},
               split={"carve": {"split": "train", "into": {"train": 0.8, "validation": 0.2}}})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert m.split_names == ["train", "validation", "test"]
    assert _ids(m, "test") == list(range(5000, 5200))
    carve = Splitter({"train": 0.8, "validation": 0.2}, "tfstream")
    expected = {"train": [], "validation": []}
    for row in range(1, 1501):  # row numbers count from 1; the key is the file's base name and the row
        expected[carve.assign(["a_TRAIN.csv", row])].append(row - 1)
    assert _ids(m, "train") == expected["train"] and _ids(m, "validation") == expected["validation"]
    assert 200 < m.num_examples("validation") < 400
    splits = m.data["splits"]
    assert (splits["validation"]["fraction"], splits["validation"]["given_split"]) == (0.2, "train")
    assert (splits["test"]["fraction"], splits["test"]["given_split"]) == (None, "test")


@pytest.mark.slow
def test_a_split_column_with_values_and_an_unknown_value_quarantined(tmp_path, caplog):
    """`split.column` gives each row's split, through `split.values` (fold numbers here);
    a row whose value names no split is rejected (`unknown_split:fold`), counted under
    `max_bad_fraction` like any bad row. A hash key that nothing uses is warned about."""
    folds = np.array(["1", "2", "3", "7", ""] * 40)  # 7 and "" name no split
    _write(str(tmp_path / "rows.csv"), "csv", range(200), {"fold": folds})
    split = {"column": "fold", "values": {1: "train", 2: "train", 3: "test"}, "key": ["id"]}
    job = _job({"format": "csv", "path": str(tmp_path / "rows.csv")}, split=split,
               validation={"max_bad_fraction": 0.5})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert "split.key is not used: the splits are given (split.values) and none is carved (split.carve); " \
           "remove it" in caplog.text
    assert m.split_names == ["train", "test"]
    assert _ids(m, "train") == [i for i in range(200) if folds[i] in ("1", "2")]
    assert _ids(m, "test") == [i for i in range(200) if folds[i] == "3"]
    src = m.data["source"]
    assert (src["rows_read"], src["rows_written"], src["rows_rejected"]) == (200, 120, 80)
    assert src["rejected"] == {"unknown_split:fold": 80}
    records = quarantine_records(m.root, m.data)
    assert len(records) == 80 and {r["reason"] for r in records} == {"unknown_split"}
    path = str(tmp_path / "rows.csv")
    name = "rows.csv"  # source.record_paths: relative to the source's folder
    assert records[0]["message"] == (f"{name}: row 4: column 'fold': '7' names no split; the split values are "
                                     f"'1', '2', '3' (split.values)")
    assert records[1]["message"] == f"{name}: row 5: column 'fold': '' names no split; the split values are " \
                                    f"'1', '2', '3' (split.values)"
    assert records[0]["values"] == {"id": "3", "x": records[0]["values"]["x"], "y": records[0]["values"]["y"],
                                    "fold": "7"}
    strict = _job({"format": "csv", "path": path}, split=split)
    with pytest.raises(PreprocessError, match=r"80 of 200 rows \(40.00%\) break a rule, more than "
                                              r"validation.max_bad_fraction 0. Worst: unknown_split:fold x80"):
        preprocess(strict, output_dir=str(tmp_path / "strict"))


@pytest.mark.slow
def test_write_arrays_splits_by_a_column_as_preprocess_of_the_npz(tmp_path):
    """`split.column` in `write_arrays` (the row-by-row route: the vectorized one is for
    hash splits) gives the shards that `preprocess` of the same arrays as an .npz gives,
    byte for byte, with a carved split keyed by the row number, and the same quarantine
    (but for the file's name: ``arrays``)."""
    rng = np.random.default_rng(3)
    arrays = {"id": np.arange(3000), "x": rng.random(3000), "y": rng.integers(0, 2, 3000),
              "fold": rng.integers(0, 5, 3000)}
    arrays["fold"][[10, 500, 2999]] = 9  # no split
    np.savez(tmp_path / "rows.npz", **arrays)
    split = {"column": "fold", "values": {0: "train", 1: "train", 2: "train", 3: "test", 4: "test"},
             "carve": {"split": "train", "into": {"train": 0.9, "validation": 0.1}}}
    more = dict(split=split, validation={"max_bad_fraction": 0.01})
    beam = preprocess(_job({"format": "npz", "path": str(tmp_path / "rows.npz")}, **more),
                      output_dir=str(tmp_path / "beam"))
    ours = write_arrays(_job({"format": "npz", "path": "<arrays>"}, **more), arrays, str(tmp_path / "arrays"),
                        chunk_rows=700)
    assert ours.split_names == beam.split_names == ["train", "validation", "test"]
    a, b = _contents(tmp_path / "arrays"), _contents(tmp_path / "beam")
    assert a.keys() == b.keys() and sum(k.endswith(".tfrecord") for k in a) >= 3
    assert a == {k: v.replace(b"rows.npz", b"arrays") for k, v in b.items()}
    assert _ids(ours, "test") == [i for i in range(3000) if arrays["fold"][i] in (3, 4)]
    assert ours.data["source"]["rejected"] == {"unknown_split:fold": 3}
    assert 100 < ours.num_examples("validation") < 250


def test_write_arrays_refuses_splits_given_per_file(tmp_path):
    job = _job({"format": "npz", "splits": {"train": "a.npz", "test": "b.npz"}})
    with pytest.raises(ConfigError, match=r"^source.splits: write_arrays takes its rows from the arrays given, not "
                                          r"from files, so no file can give a split; give each row's split in an "
                                          r"array \(split.column, with split.values\), or write the files with "
                                          r"preprocess$"):
        write_arrays(job, {"id": np.arange(3), "x": np.ones(3), "y": np.zeros(3, int)}, str(tmp_path / "ds"))
    assert not os.path.exists(tmp_path / "ds")


def test_split_files_are_resolved_and_checked(tmp_path):
    for name in ("a_TRAIN.csv", "b_TRAIN.csv", "c_TEST.csv"):
        (tmp_path / name).write_text("id,x,y\n1,0.5,1\n", encoding="utf-8")
    job = _job({"format": "csv", "splits": {"train": [str(tmp_path / "a_*.csv"), str(tmp_path / "b_*.csv")],
                                            "test": str(tmp_path / "*_TEST.csv")}})
    files = resolve_split_files(job.source)
    assert files == {str(tmp_path / "a_TRAIN.csv"): "train", str(tmp_path / "b_TRAIN.csv"): "train",
                     str(tmp_path / "c_TEST.csv"): "test"}
    assert resolve_source_paths(job.source) == sorted(files)
    overlap = _job({"format": "csv", "splits": {"train": str(tmp_path / "*.csv"), "test": str(tmp_path / "c_*")}})
    with pytest.raises(SourceError, match=r"^source.splits: .*c_TEST.csv is matched by 'test' \('.*c_\*'\) and by "
                                          r"'train' \('.*\*.csv'\); a file's rows go to one split: make the globs "
                                          r"disjoint$"):
        resolve_split_files(overlap.source)
    missing = _job({"format": "csv", "splits": {"train": str(tmp_path / "*.csv"), "test": str(tmp_path / "*.tsv")}})
    with pytest.raises(FileNotFoundError, match=r"^source.splits.test '.*\*.tsv': no file matches"):
        resolve_source_paths(missing.source)


def test_the_shipped_month_holdout_config_on_a_slice_of_flights(flights_csv, make_job, tmp_path):
    """configs/flights_by_month.yaml: January to October train (validation carved out by
    the flight's hash), November and December test; the training split's statistics
    (vocabularies, drift) come from the training months only."""
    job = make_job("flights_by_month.yaml", source={"path": flights_csv})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert m.split_names == ["train", "validation", "test"]

    def months(split):
        out = set()
        for path in m.shard_paths(split):
            with open(path, "rb") as f:
                out |= {int(decode_example(r, m.schema)["month"]) for r in read_records(f, path)}
        return out

    assert months("train") == months("validation") == set(range(1, 11)) and months("test") == {11, 12}
    assert m.split("train").statistics("month").max == 10
    assert 0.08 < m.num_examples("validation") / (m.num_examples("train") + m.num_examples("validation")) < 0.12
    assert [len(m.split(s).shards) for s in m.split_names] == [8, 1, 2]
    src = m.data["source"]  # rows dropped after their split is known keep their own reason
    assert src["rejected"] == {} and set(src["dropped"]) == {"missing:dep_delay", "missing_label:arr_delay"}
