"""Sequences as tables: long-format CSV and Parquet (`long_source`), Parquet list columns,
and the config rules between them (`config_sequence`)."""

import datetime
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tfstream.pipelines.config import SourceConfig
from tfstream.pipelines.config_errors import ConfigError
from tfstream.pipelines.write.long_source import long_chunks
from tfstream.pipelines.write.rows import ROW_NUMBERS, BadLines, route_chunk
from tfstream.pipelines.write.sources import SourceError, check_source
from tfstream.transforms.split import SplitRouter

COLUMNS = ["x", "y", "label", "id", "t"]


def _chunks(path, fmt="csv", columns=COLUMNS, step_columns=("x", "y"), chunk_rows=1024):
    source = SourceConfig(format=fmt, path=str(path), sequence={"id": "id", "order": "t"})
    return list(long_chunks(str(path), source=source, columns=columns, step_columns=list(step_columns),
                            chunk_rows=chunk_rows))


def test_rows_are_grouped_by_id_sorted_by_order_and_bad_groups_rejected_whole(tmp_path):
    path = tmp_path / "steps.csv"
    path.write_text("id,t,x,y,label\n"
                    "a,10,1.5,2,cat\n"     # row 1
                    "b,1,7,8,dog\n"        # row 2
                    "a,9,0.5,1,cat\n"      # row 3: before row 1 (9 < 10, a number, not text)
                    "dup,1,0,0,cat\n"      # row 4
                    ",3,0,0,cat\n"         # row 5: no id
                    "dup,1,1,1,cat\n"      # row 6: frame 1 again
                    "varies,1,0,0,cat\n"   # row 7
                    "varies,2,0,0,dog\n"   # row 8: the label changes
                    "bad,x,0,0,cat\n"      # row 9: not a number
                    "a,11,,3,cat\n")       # row 10: a missing step value stays missing (on_nan decides)
    chunks = _chunks(path)
    (name, first, bad), (_, first_good, good) = chunks
    assert isinstance(bad, BadLines) and name == str(path) and first == 5
    assert {b["reason"]: (b["row"], b["lines"]) for b in bad} == {
        "missing_id": (5, "5"), "duplicate_order": (4, "4-6"), "varies_within_sequence": (7, "7-8"),
        "bad_order": (9, "9")}
    messages = {b["reason"]: b["message"] for b in bad}
    assert messages["duplicate_order"] == (
        f"{path}: row 4: sequence id 'dup' (2 rows): order value '1' (column 't') is at rows [4, 6]; each step of a "
        f"sequence needs its own order value: remove the repeated rows, or give them distinct order values")
    assert messages["varies_within_sequence"].startswith(
        f"{path}: row 7: sequence id 'varies' (2 rows): column 'label' holds 2 different values ('cat', 'dog'), "
        f"but it is read once per sequence")
    assert messages["bad_order"] == (f"{path}: row 9: sequence id 'bad' (1 row): an order value (column 't') 'x' is "
                                     f"not a number; steps are sorted by numbers (or Parquet times)")
    assert messages["missing_id"].startswith(f"{path}: row 5: 1 row(s) have no value in the id column 'id'")
    assert first_good == 1
    assert good == {"x": [["0.5", "1.5", ""], ["7"]], "y": [["1", "2", "3"], ["8"]], "label": ["cat", "dog"],
                    "id": ["a", "b"], ROW_NUMBERS: [1, 2]}


def test_routed_sequences_keep_their_first_row_and_split_by_id(tmp_path):
    """`route_chunk` numbers a sequence by its first step's row, and the split key (the id)
    puts every sequence of an id in one split, whatever its rows."""
    from tfstream.transforms.schema import Feature, Label
    from tfstream.transforms.validation import FeatureRule, LabelRule, RowRules

    path = tmp_path / "steps.csv"
    path.write_text("id,t,x,y,label\n" + "".join(f"s{i % 50},{i},{i},1,{i % 50 % 2}\n" for i in range(400)) +
                    "s7,1000,inf,1,1\n")
    rules = RowRules((FeatureRule(Feature("seq", "sequence", "float32", (2,)), ("x", "y")),),
                     LabelRule(Label("label", "multiclass", ("0", "1")), "label", raw_classes=("0", "1")))
    router = SplitRouter({"train": 0.5, "eval": 0.5})
    routed = [out for chunk in _chunks(path) for out in route_chunk(chunk, rules, router, ["id"])]
    rejected = [out for tag, out in routed if tag == "_quarantine"]
    assert [(r["row"], r["reason"], r["values"]["id"]) for r in rejected] == [(8, "not_finite", "s7")]
    assert rejected[0]["message"].startswith(f"{path}: row 8: column 'x': the sequence holds NaN or inf")
    kept = [(tag, out) for tag, out in routed if tag != "_quarantine"]
    assert len(kept) == 49 and all(out["seq"].shape == (8, 2) for _, out in kept)
    again = [out for chunk in _chunks(path, chunk_rows=7) for out in route_chunk(chunk, rules, router, ["id"])]
    assert [tag for tag, _ in kept] == [tag for tag, _ in again if tag != "_quarantine"]
    assert {"train", "eval"} == {tag for tag, _ in kept}
    np.testing.assert_array_equal(kept[0][1]["seq"][:, 0], np.arange(0, 400, 50))  # sorted by t, as numbers


def test_parquet_long_table_sorts_by_time_and_groups_per_zip_member(tmp_path):
    t0 = datetime.datetime(2026, 1, 1)
    path = tmp_path / "steps.parquet"
    pq.write_table(pa.table({"id": [2, 1, 2, 1], "t": [t0 + datetime.timedelta(seconds=s) for s in (5, 3, 1, 4)],
                             "x": [0.5, 1.0, 2.0, None], "y": [1.0] * 4, "label": ["a"] * 4}), path)
    [(_, _, chunk)] = _chunks(path, "parquet")
    assert chunk["id"] == [2, 1] and chunk["x"] == [[2.0, 0.5], [1.0, None]] and chunk[ROW_NUMBERS] == [1, 2]
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as z:  # an id in two members: two sequences (grouping is per file)
        z.writestr("a.csv", "id,t,x,y,label\nk,2,1,1,a\nk,1,0,0,a\n")
        z.writestr("b.csv", "id,t,x,y,label\nk,3,2,2,a\n")
    got = [(name.rsplit("!", 1)[1], chunk["x"]) for name, _, chunk in _chunks(archive)]
    assert got == [("a.csv", [["0", "1"]]), ("b.csv", [["2"]])]


def test_check_source_refuses_a_text_order_column_and_a_sequence_that_is_not_a_list(tmp_path):
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [1], "t": ["2026-01-01"], "x": [1.0], "label": ["a"]}), path)
    source = SourceConfig(format="parquet", path=str(path), sequence={"id": "id", "order": "t"})
    with pytest.raises(SourceError, match=r"t.parquet: the order column 't' \(source.sequence.order\) is string; "
                                          r"steps are sorted by numbers or times: store it as integers, floats or "
                                          r"timestamps"):
        check_source([str(path)], source, ["x", "label", "id", "t"], ["x"])
    lists = SourceConfig(format="parquet", path=str(path))
    with pytest.raises(SourceError, match=r"column 'x' is double, but a sequence feature reads it: a Parquet "
                                          r"sequence is a list column \(list<float> for dim 1"):
        check_source([str(path)], lists, ["x", "label"], ["x"])
    pq.write_table(pa.table({"x": pa.array([[[1.0, 2.0]]], pa.list_(pa.list_(pa.float32()))), "label": ["a"]}), path)
    check_source([str(path)], lists, ["x", "label"], ["x"])


def _job(make_job, source, features):
    return make_job("digits_lstm.yaml", source={"lengths_key": None, **source}, features=features, label={"column": "digit",
                    "task": "multiclass", "num_classes": 10})


@pytest.mark.parametrize("source, features, message", [
    ({"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "f"}},
     [{"name": "s", "type": "sequence", "dim": 3, "columns": ["a", "b"]}],
     r"features\[s\]: in a long-format table each step's 3 value\(s\) come from 3 column\(s\), one per channel: give "
     r"`columns: \[...\]` with 3 names$"),
    ({"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "f"}},
     [{"name": "s", "type": "sequence", "dim": 2, "column": "a"}], r"\(`column` is for `dim: 1`\)$"),
    ({"format": "parquet", "path": "s.parquet"}, [{"name": "s", "type": "sequence", "dim": 2, "columns": ["a", "b"]}],
     r"features\[s\].columns: one column per channel is for long-format tables \(`source.sequence`\)"),
    ({"format": "npz", "path": "s.npz", "sequence": {"id": "r", "order": "f"}},
     [{"name": "s", "type": "sequence", "dim": 1}], r"long-format tables are csv or parquet, not npz; remove it"),
    ({"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "f"}},
     [{"name": "s", "type": "sequence", "dim": 1, "column": "f"}],
     r"features\[s\]: reads 'f', which is source.sequence.order; read another column"),
    ({"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "r"}},
     [{"name": "s", "type": "sequence", "dim": 1}], r"source.sequence: `id` and `order` are both 'r'"),
])
def test_sequence_table_config_errors(make_job, source, features, message):
    with pytest.raises(ConfigError, match=message):
        _job(make_job, source, features)


def test_a_long_table_reads_its_id_and_order_and_splits_by_id(make_job):
    job = _job(make_job, {"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "f"}},
               [{"name": "s", "type": "sequence", "dim": 2, "columns": ["a", "b"]}])
    assert job.sequence_columns() == ["a", "b"] and job.split_key() == ("r",)
    assert job.source_columns() == ["a", "b", "digit", "r", "f"]


def test_write_arrays_refuses_a_long_table_config(make_job):
    from tfstream.pipelines.write.arrays import write_arrays

    job = _job(make_job, {"format": "csv", "path": "s.csv", "sequence": {"id": "r", "order": "f"}},
               [{"name": "s", "type": "sequence", "dim": 1, "column": "a"}])
    with pytest.raises(ConfigError, match=r"^source.sequence: write_arrays takes arrays in the npz layouts, not a "
                                          r"long-format table"):
        write_arrays(job, {"a": np.ones(3), "digit": np.ones(3), "r": np.ones(3), "f": np.ones(3)}, "unused")


def test_parquet_list_columns_one_row_per_sequence_and_ragged_steps_rejected(tmp_path):
    from tfstream.pipelines.write.sources import read_chunks
    from tfstream.transforms.schema import Feature, Label
    from tfstream.transforms.validation import FeatureRule, LabelRule, RowRules

    path = tmp_path / "lists.parquet"
    steps = pa.list_(pa.list_(pa.float32()))
    pq.write_table(pa.table({"s": pa.array([[[1, 2], [3, 4], [5, 6]], [[1, 2], [3]], [[7, 8]]], steps),
                             "k": [10, 11, 12], "label": [0.5, 1.5, 2.5]}), path)
    rules = RowRules((FeatureRule(Feature("s", "sequence", "float32", (2,)), ("s",)),),
                     LabelRule(Label("label", "regression"), "label"))
    source = SourceConfig(format="parquet", path=str(path))
    check_source([str(path)], source, ["s", "label", "k"], ["s"])
    routed = [out for chunk in read_chunks(str(path), source=source, columns=["s", "label", "k"],
                                           sequence_columns=["s"])
              for out in route_chunk(chunk, rules, SplitRouter({"train": 1.0}), ["k"])]
    (_, first), (tag, bad), (_, last) = routed
    np.testing.assert_array_equal(first["s"], np.array([[1, 2], [3, 4], [5, 6]], np.float32))
    np.testing.assert_array_equal(last["s"], np.array([[7, 8]], np.float32))
    assert tag == "_quarantine" and (bad["row"], bad["reason"]) == (2, "bad_shape")
    assert bad["message"] == (f"{path}: row 2: column 's': step 1 holds one value, but the feature declares `dim: 2` "
                              f"(values per step); every step of a sequence needs 2")


@pytest.mark.parametrize("split, train, message", [
    ({"key": ["f"]}, {}, r"^split.key: 'f' is source.sequence.order, which differs from step to step"),
    ({"column": "f", "values": ["train", "test"], "fractions": None}, {"validation_split": None, "eval_split": "test"},
     r"^split.column: 'f' is source.sequence.order"),
])
def test_the_order_column_cannot_split(make_job, split, train, message):
    output = {"num_shards": {}} if "column" in split else {}
    """The grouped rows hold one value per sequence for every other column; the order
    column's values are the steps', so a split on it is refused on load (it raised a
    KeyError inside the pipeline)."""
    with pytest.raises(ConfigError, match=message):
        make_job("digits_lstm.yaml", source={"lengths_key": None, "format": "csv", "path": "s.csv",
                                             "sequence": {"id": "r", "order": "f"}},
                 features=[{"name": "s", "type": "sequence", "dim": 1, "column": "a"}],
                 label={"column": "digit", "task": "multiclass", "num_classes": 10}, split=split, train=train,
                 output=output)


def test_a_bad_csv_line_rejects_the_sequence_it_belongs_to(tmp_path):
    """A line that is not a row (here an extra field) is quarantined as a bad line, and
    the sequence whose id it holds is rejected whole: written without it, the sequence
    would silently miss its step."""
    path = tmp_path / "steps.csv"
    path.write_text("id,t,x,y,label\n"
                    "a,1,0.5,1,cat\n"
                    "a,2,0.7,1,cat,EXTRA\n"   # row 2: six fields
                    "a,3,0.9,1,cat\n"
                    "b,1,7,8,dog\n"
                    "b,2,6,8,dog\n")
    chunks = _chunks(path)
    bad = [b for _, _, c in chunks if isinstance(c, BadLines) for b in c]
    assert sorted((b["reason"], b["row"]) for b in bad) == [("bad_line", 2), ("missing_step", 1)]
    (missing,) = [b for b in bad if b["reason"] == "missing_step"]
    assert missing["lines"] == "1-3" and "row 2 holds this id but is not a valid row" in missing["message"]
    (good,) = [c for _, _, c in chunks if not isinstance(c, BadLines)]
    assert good["id"] == ["b"] and good["x"] == [["7", "6"]]
