"""Every bad row accounted for: the quarantine, the bad-row budget, imputation and drift,
through whole preprocessing runs on slices of the real data."""

import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tfstream.pipelines.write.beam_pipeline import PreprocessError, preprocess
from tfstream.pipelines.manifest import load_manifest, quarantine_records
from tfstream.pipelines.shards import tf_compression_type
from tfstream.transforms.codecs import decode_example


def _lines(path, n):
    with open(path, encoding="utf-8") as f:
        return [next(f).rstrip("\n") for _ in range(n + 1)]  # the header and n rows


def _with_cells(lines, changes):
    """``changes``: {row number (1-based): {column: new cell}}."""
    header = lines[0].split(",")
    out = list(lines)
    for row, cells in changes.items():
        parts = out[row].split(",")
        for column, value in cells.items():
            parts[header.index(column)] = value
        out[row] = ",".join(parts)
    return out


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _quarantine(dataset_dir, manifest_data):
    return quarantine_records(dataset_dir, manifest_data)


def _accounted(data, quarantined):
    src = data["source"]
    assert src["rows_written"] + len(quarantined) == src["rows_read"]
    assert len(quarantined) == src["rows_dropped"] + src["rows_rejected"]


# One run with one bad row of each kind a CSV can hold; every message pinned.
CSV_BAD_ROWS = {
    3: ({"distance": "far"}, "not_a_number", "distance", "column 'distance': expected a number, got 'far'"),
    5: ({"month": "3.5"}, "not_an_integer", "month", "column 'month': expected an integer, got '3.5'"),
    7: ({"distance": "inf"}, "not_finite", "distance",
        "column 'distance': expected a finite number, got 'inf'; set `on_nan: drop` or `on_nan: impute` on the "
        "feature to accept such rows"),
    9: ({"carrier": ""}, "missing", "carrier",
        "column 'carrier': missing value for feature 'carrier'; set `on_missing: drop`, `on_missing: default` "
        "or (numbers) `on_missing: impute` on that feature to accept such rows"),
    11: ({"arr_delay": "soon"}, "not_a_number", "arr_delay", "column 'arr_delay': expected a number, got 'soon'"),
    13: ({"sched_dep_time": "1e30"}, "out_of_range", "sched_dep_time",
         "column 'sched_dep_time': '1e30' is outside the int64 range"),
}


@pytest.fixture(scope="module")
def csv_run(flights_csv, make_job, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("csv_bad")
    lines = _with_cells(_lines(flights_csv, 400), {row: cells for row, (cells, *_) in CSV_BAD_ROWS.items()})
    path = _write(tmp, "bad_kinds.csv", lines)
    job = make_job("flights_dense.yaml", source={"path": path}, validation={"max_bad_fraction": 0.05})
    out = str(tmp / "ds")
    return path, out, preprocess(job, output_dir=out)


def test_each_bad_kind_is_quarantined_with_its_reason(csv_run):
    path, out, m = csv_run
    records = {r["row"]: r for r in _quarantine(out, m.data) if r["action"] == "rejected"}
    assert sorted(records) == sorted(CSV_BAD_ROWS)
    name = os.path.basename(path)  # source.record_paths: relative to the source's folder
    for row, (_, reason, column, message) in CSV_BAD_ROWS.items():
        r = records[row]
        assert (r["file"], r["reason"], r["column"]) == (name, reason, column)
        assert r["message"] == f"{name}: row {row}: {message}"
    assert records[3]["values"]["distance"] == "far" and records[3]["values"]["carrier"]  # the raw row, to fix it
    src = m.data["source"]
    assert src["rows_rejected"] == len(CSV_BAD_ROWS)
    assert src["rejected"]["not_a_number:distance"] == 1
    _accounted(m.data, _quarantine(out, m.data))


def test_bad_rows_within_the_budget_pass_and_beyond_it_refuse_the_run(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv, 1000)
    bad_rows = [40, 140, 440, 640, 940]  # 0.5% of the rows read
    path = _write(tmp_path, "half_percent.csv", _with_cells(lines, {r: {"distance": "n/a"} for r in bad_rows}))
    out = str(tmp_path / "ds")
    ok = preprocess(make_job("flights_dense.yaml", source={"path": path}, validation={"max_bad_fraction": 0.01}),
                    output_dir=out)
    src = ok.data["source"]
    assert (src["rows_read"], src["rows_rejected"]) == (1000, 5)
    quarantined = _quarantine(out, ok.data)
    assert sorted(r["row"] for r in quarantined if r["action"] == "rejected") == bad_rows
    _accounted(ok.data, quarantined)

    strict = make_job("flights_dense.yaml", source={"path": path}, validation={"max_bad_fraction": 0.001})
    with pytest.raises(PreprocessError) as e:
        preprocess(strict, output_dir=out)
    message = str(e.value)
    assert message.startswith(
        "5 of 1,000 rows (0.50%) break a rule, more than validation.max_bad_fraction 0.001. "
        f"Worst: not_a_number:distance x5 (first: {os.path.basename(path)}: row 40: column 'distance': expected a number, got 'n/a')")
    assert "the dataset in" in message and "was not changed" in message
    refused_dir = os.path.join(out, "rejected-run")
    refused = json.load(open(os.path.join(refused_dir, "manifest.json")))
    _accounted(refused, _quarantine(refused_dir, refused))
    assert load_manifest(out).data["created_at"] == ok.data["created_at"]  # the last good run is still served
    assert not glob.glob(os.path.join(refused_dir, "train", "*"))  # the refused shards are gone


def test_imputed_values_are_the_training_mean_and_counted(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv, 600)
    holes = {r: {"distance": "NA"} for r in range(2, 600, 50)} | {r: {"distance": "inf"} for r in (5, 105)}
    path = _write(tmp_path, "holes.csv", _with_cells(lines, holes))
    features = [{"name": "distance", "type": "float", "on_missing": "impute", "on_nan": "impute"},
                {"name": "carrier", "type": "string", "vocab_size": 3, "oov_buckets": 2}]
    job = make_job("flights_dense.yaml", source={"path": path}, features=features)
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    stats = m.data["splits"]["train"]["statistics"]["features"]
    d = stats["distance"]
    assert d["impute"] == "mean" and d["missing"] + d["non_finite"] > 0
    assert len(stats["carrier"]["vocabulary"]) == 3 and stats["carrier"]["num_unique"] > 3
    assert stats["carrier"]["oov_buckets"] == 2
    # The imputed records hold the training mean, in every split (no leak from eval).
    imputed, total = 0, 0
    for split in m.split_names:
        for path_ in m.shard_paths(split):
            for record in tf.data.TFRecordDataset(path_, compression_type=tf_compression_type(m.compression)):
                value = decode_example(record.numpy(), m.schema)["distance"]
                assert np.isfinite(value)
                imputed += bool(np.isclose(value, d["mean"], rtol=1e-6))
                total += 1
    holes_in_written = sum(m.data["splits"][s]["statistics"]["features"]["distance"]["missing"] +
                           m.data["splits"][s]["statistics"]["features"]["distance"]["non_finite"] for s in m.split_names)
    left_out = {r["row"] for r in _quarantine(str(tmp_path / "ds"), m.data)}
    assert len(holes) == 14
    assert imputed == holes_in_written == len(set(holes) - left_out) >= 12


@pytest.mark.slow
def test_sequence_rules_in_a_run(tmp_path, make_job):
    rng = np.random.default_rng(0)
    lengths = np.array([4, 0, 30, 5, 6, 3])
    X = rng.normal(size=(lengths.sum(), 13)).astype(np.float32)
    X[4 + 30 + 2, 5] = np.nan  # in the 4th sequence
    np.savez(tmp_path / "seq.npz", X=X, lengths=lengths, y=np.arange(6))
    features = [{"name": "mfcc", "type": "sequence", "column": "X", "dim": 13, "max_length": 10}]
    job = make_job("digits_lstm.yaml", source={"path": str(tmp_path / "seq.npz")}, features=features,
                   validation={"max_bad_fraction": 0.5})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    records = {r["row"]: r for r in _quarantine(str(tmp_path / "ds"), m.data)}
    path = str(tmp_path / "seq.npz")
    name = "seq.npz"  # source.record_paths: relative to the source's folder
    assert records[2]["message"] == f"{name}: row 2: column 'X': the sequence is empty"
    assert records[4]["message"] == (f"{name}: row 4: column 'X': the sequence holds NaN or inf; set `on_nan: drop` "
                                     f"or `on_nan: impute` on the feature to accept such rows")
    assert records[4]["values"]["X"] == "<array of shape (5, 13)>"
    assert sorted(records) == [2, 4]
    truncated = sum(m.data["splits"][s]["statistics"]["features"]["mfcc"]["truncated"] for s in m.split_names)
    assert truncated == 1 and max(m.data["splits"][s]["statistics"]["features"]["mfcc"]["length"]["max"] for s in m.split_names) <= 10
    _accounted(m.data, list(records.values()))

    too_long = [{**features[0], "on_too_long": "error"}]
    job = make_job("digits_lstm.yaml", source={"path": path}, features=too_long, validation={"max_bad_fraction": 0.5})
    m = preprocess(job, output_dir=str(tmp_path / "ds2"))
    (r,) = [r for r in _quarantine(str(tmp_path / "ds2"), m.data) if r["reason"] == "too_long"]
    assert r["message"] == (f"{name}: row 3: column 'X': the sequence has 30 steps, more than max_length 10; set "
                            f"`on_too_long: truncate` or `drop` to accept such rows")


def test_drift_against_the_previous_run_warns_or_refuses(flights_csv, make_job, tmp_path, caplog):
    lines = _lines(flights_csv, 800)
    first = _write(tmp_path, "a.csv", lines)
    header = lines[0].split(",")
    shifted = [lines[0]] + [",".join(str(float(v) * 3) if header[i] == "distance" else v
                                     for i, v in enumerate(line.split(","))) for line in lines[1:]]
    second = _write(tmp_path, "b.csv", shifted)
    out = str(tmp_path / "ds")
    preprocess(make_job("flights_dense.yaml", source={"path": first}), output_dir=out)
    m = preprocess(make_job("flights_dense.yaml", source={"path": second}), output_dir=out)  # warn (default)
    findings = m.data["drift"]["findings"]
    assert [(f["feature"], f["kind"], f["severity"]) for f in findings] == [("distance", "mean_shift", "warning")]
    assert findings[0]["value"] > 0.5 and "distance: mean_shift: mean moved from" in caplog.text

    strict = make_job("flights_dense.yaml", source={"path": first},
                      features=[f for f in make_job("flights_dense.yaml").to_json()["features"]
                                if f["name"] != "day"],
                      validation={"drift": {"on_drift": "error"}})
    with pytest.raises(PreprocessError, match=r"the statistics drifted from .*manifest.json \(validation.drift."
                                              r"on_drift: error\): day: removed: gone: was numeric int64; "
                                              r"distance: mean_shift: mean moved from"):
        preprocess(strict, output_dir=out)
    assert load_manifest(out).data["created_at"] == m.data["created_at"]


def test_vocabulary_drift_counts_shares_of_all_values_and_respects_a_cut_vocabulary():
    from dataclasses import replace

    from tfstream.pipelines.manifest import CategoricalStatistics
    from tfstream.pipelines.write.drift import vocabulary_linf

    old = CategoricalStatistics(count=100, missing=0, num_unique=3, vocabulary=(("a", 50), ("b", 30), ("c", 20)))
    new = CategoricalStatistics(count=200, missing=0, num_unique=3, vocabulary=(("a", 100), ("b", 40), ("c", 60)))
    assert vocabulary_linf(old, new) == pytest.approx(0.1)  # b: 0.3 -> 0.2, c: 0.2 -> 0.3
    gone = replace(new, num_unique=2, vocabulary=(("a", 100), ("b", 100)))
    assert vocabulary_linf(old, gone) == pytest.approx(0.2)  # c: 0.2 -> 0 (the new vocabulary is whole)
    # cut to 2 tokens: "c" left the top 2, but its share could be up to 0.2 (b's): no drift from the cut alone
    cut_old = replace(old, vocabulary=(("a", 50), ("b", 30)))
    cut_new = replace(old, vocabulary=(("a", 50), ("c", 30)), num_unique=3)
    assert vocabulary_linf(cut_old, cut_new) == pytest.approx(0.0)


def test_imputing_a_feature_the_training_split_never_has_is_a_clear_error(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv, 200)
    path = _write(tmp_path, "empty_col.csv", _with_cells(lines, {r: {"distance": "NA"} for r in range(1, 201)}))
    job = make_job("flights_dense.yaml", source={"path": path},
                   features=[{"name": "distance", "type": "float", "on_missing": "impute"}])
    with pytest.raises(PreprocessError, match=r"feature 'distance': the training split has no value of it .* use "
                                              r"`on_missing: default` or `drop` instead"):
        preprocess(job, output_dir=str(tmp_path / "ds"))


def test_a_previous_manifest_that_is_not_there_is_an_error_before_the_run(flights_job, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"previous manifest '.*nowhere': none there that this tfstream reads"):
        preprocess(flights_job, output_dir=str(tmp_path / "ds"), previous=str(tmp_path / "nowhere"))
    assert not os.path.exists(tmp_path / "ds")


def test_integer_classes_through_a_preprocess(flights_csv, make_job, tmp_path):
    """``classes: [1, ..., 11]``, YAML integers, match a CSV's text and name the classes
    by it; a value not declared (December's 12) is rejected, named as text."""
    label = {"name": "month_label", "column": "month", "task": "multiclass", "threshold": None,
             "classes": list(range(1, 12)), "on_missing": "error"}
    job = make_job("flights_dense.yaml", source={"path": flights_csv}, label=label,
                   validation={"max_bad_fraction": 0.2})
    out = str(tmp_path / "ds")
    m = preprocess(job, output_dir=out)
    assert m.label.classes == tuple(str(i) for i in range(1, 12))
    counts = {c: sum(m.split(s).label.class_counts[c] for s in m.split_names) for c in m.label.classes}
    assert all(counts.values()) and sum(counts.values()) == m.source.rows_written
    rejected = [r for r in _quarantine(out, m.data) if r["action"] == "rejected"]
    assert rejected and m.source.rejected == {"unknown_class:month": len(rejected)}
    assert {r["values"]["month"] for r in rejected} == {"12"}
    assert rejected[0]["message"].endswith(
        "column 'month': label '12' is not one of the declared classes ['1', '2', '3', '4', '5', '6', '7', '8', '9', "
        "'10', '11']")
    _accounted(m.data, _quarantine(out, m.data))
