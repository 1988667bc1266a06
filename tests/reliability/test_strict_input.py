"""Hostile input does not crash a run, nor pass unnoticed: valid CSV reads whatever its
size, numbers follow a strict grammar, and ambiguous headers and npz arrays whose dtype
or shape the config does not declare are refused before the pipeline starts."""

import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from tfstream.pipelines.manifest import quarantine_records
from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.pipelines.write.csv_source import BLOCK_SIZE
from tfstream.pipelines.write.sources import SourceError, check_source, read_chunks
from tfstream.transforms.schema import Feature, Label
from tfstream.transforms.validation import FeatureRule, LabelRule, RowError, RowRules, convert_row

# A small CSV job: a number, a categorical, a regression label; one split.
FEATURES = [{"name": "x", "type": "float"}, {"name": "n", "type": "int"}, {"name": "who", "type": "string"}]
LABEL = {"column": "y", "task": "regression", "name": "target", "threshold": None, "on_missing": "error"}


def _csv_job(make_job, path, **overrides):
    settings = dict(source={"path": str(path)}, features=FEATURES, label=LABEL,
                    split={"key": [], "fractions": {"train": 1.0}}, output={"num_shards": {}},
                    train={"validation_split": None, "eval_split": "train"})
    return make_job("flights_dense.yaml", **{**settings, **overrides})


def _rows(path, job):
    return [(row, {c: chunk[c][i] for c in chunk}) for _, first, chunk in
            read_chunks(str(path), source=job.source, columns=job.source_columns())
            for i, row in enumerate(range(first, first + len(chunk["x"])))]


# --------------------------------------------------------------------------- CSV size


def _quoted_newlines_csv(path, rows):
    """A CSV whose every row has a quoted note of many lines (unread) and a quoted
    categorical value with a newline and a comma; over 4 MB for 1,200 rows."""
    note = '"' + "a line of the note, quoted\n" * 140 + '"'
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("x,note,who,n,y\n")
        for i in range(rows):
            f.write(f'{i * 0.5},{note},"line one\nline two, {i % 3}",{i},{i % 7}\n')
    return str(path)


def test_quoted_newlines_in_a_csv_larger_than_a_block(make_job, tmp_path):
    path = _quoted_newlines_csv(tmp_path / "notes.csv", 1200)
    assert os.path.getsize(path) > BLOCK_SIZE
    with pytest.raises(pa.ArrowInvalid, match="out of sync|Expected 5 columns"):  # the old defect
        for _ in pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=BLOCK_SIZE)):
            pass
    job = _csv_job(make_job, path)
    rows = _rows(path, job)
    assert [r for r, _ in rows] == list(range(1, 1201))
    assert rows[1200 - 1][1] == {"x": "599.5", "who": "line one\nline two, 2", "n": "1199", "y": "2"}

    m = preprocess(job, output_dir=str(tmp_path / "out"))
    assert (m.data["source"]["rows_read"], m.data["source"]["rows_written"]) == (1200, 1200)
    vocabulary = m.data["splits"]["train"]["statistics"]["features"]["who"]["vocabulary"]
    assert sorted(vocabulary) == [[f"line one\nline two, {k}", 400] for k in range(3)]


def _big_field_csv(path, before, field_bytes, after):
    """``before`` small rows, one row with a ``field_bytes`` field (unread), ``after`` rows."""
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("x,note,who,n,y\n")
        for i in range(before):
            f.write(f"{i},,a,{i},1\n")
        f.write(f'{before},"{"z" * field_bytes}",big,{before},2\n')
        for i in range(before + 1, before + 1 + after):
            f.write(f"{i},,b,{i},3\n")
    return str(path)


def test_a_10_mb_field_preprocesses(make_job, tmp_path):
    path = _big_field_csv(tmp_path / "big.csv", 20, 10 << 20, 30)
    job = _csv_job(make_job, path)
    m = preprocess(job, output_dir=str(tmp_path / "out"))
    assert (m.data["source"]["rows_read"], m.data["source"]["rows_written"]) == (51, 51)


def test_rows_read_before_a_large_row_are_not_read_twice(make_job, tmp_path):
    """The first 4 MiB of rows are read before the large row shows; the file is read again
    with larger blocks from its start, and every row comes out once, in order."""
    before = (BLOCK_SIZE // 12) + 1000  # more than one block of short rows
    path = _big_field_csv(tmp_path / "late.csv", before, 6 << 20, 100)
    rows = _rows(path, _csv_job(make_job, path))
    assert [r for r, _ in rows] == list(range(1, before + 102))
    assert [int(v["x"]) for _, v in rows] == list(range(before + 101))
    assert rows[before][1]["who"] == "big"


def test_a_bad_line_after_a_large_field_is_located(make_job, tmp_path):
    path = tmp_path / "ragged.csv"
    _big_field_csv(path, 3, 300_000, 5)  # a field over the csv module's default limit (128 KiB)
    with open(path, "a", encoding="utf-8") as f:
        f.write("9,,c,9,1,extra\n")
    job = _csv_job(make_job, path)
    chunks = list(read_chunks(str(path), source=job.source, columns=job.source_columns()))
    [(bad,)] = [c[2] for c in chunks if isinstance(c[2], list)]
    assert bad["message"] == f"{path}: row 10 (line 11): expected 5 fields like the header, got 6"
    assert sum(len(c[2]) if isinstance(c[2], list) else len(c[2]["x"]) for c in chunks) == 10
    path.write_bytes(b"x,note,who,n,y\n" + f'1,"{"z" * 300_000}",a,1,1\n'.encode() + b"2,,\xff,2,1\n")
    [_, (_, row, [bad])] = list(read_chunks(str(path), source=job.source, columns=job.source_columns()))
    assert (row, bad["reason"], bad["lines"]) == (2, "bad_encoding", "3")
    assert bad["message"].startswith(f"{path}: row 2 (line 3): invalid UTF-8")


def test_bad_lines_go_to_the_quarantine_with_file_and_line(make_job, tmp_path):
    """A short line, a long line and a line with bad UTF-8 are rejected rows: quarantined
    with their file, row, line(s) and text (cut), counted in rows_read and rows_rejected;
    the file's valid rows are still read, and max_bad_fraction applies."""
    path = tmp_path / "bad.csv"
    good = [f"{i}.5,{i},w{i % 3},{i}" for i in range(1, 41)]
    lines = ["x,n,who,y", *good[:10], "11.5,11", *good[10:20], "21.5,21,w0,21,extra," + "z" * 500,
             *good[20:30], '"31.5",31,"w\nrap",31', *good[30:]]
    data = "\n".join(lines).encode() + b"\n"
    data = data.replace(b"w2,26", b"w\xff2,26")  # the 26th good row: bad UTF-8
    path.write_bytes(data)
    job = _csv_job(make_job, path, validation={"max_bad_fraction": 0.1})
    out = str(tmp_path / "out")
    m = preprocess(job, output_dir=out)
    records = sorted(quarantine_records(out, m.data), key=lambda r: r["row"])
    assert [(r["row"], r["lines"], r["reason"], r["action"], r["file"]) for r in records] == [
        (11, "12", "bad_line", "rejected", path.name),
        (22, "23", "bad_line", "rejected", path.name),
        (28, "29", "bad_encoding", "rejected", path.name),
    ]
    assert records[0]["message"] == f"{path.name}: row 11 (line 12): expected 4 fields like the header, got 2"
    assert records[0]["values"] == {"text": "11.5,11"}
    assert records[1]["values"]["text"].startswith("21.5,21,w0,21,extra,zzz")
    assert records[1]["values"]["text"].endswith("... (320 more characters)")
    assert records[2]["message"].startswith(f"{path.name}: row 28 (line 29): invalid UTF-8")
    src = m.data["source"]
    assert (src["rows_read"], src["rows_written"], src["rows_dropped"], src["rows_rejected"]) == (43, 40, 0, 3)
    assert src["rows_read"] == src["rows_written"] + src["rows_dropped"] + src["rows_rejected"]
    assert src["rejected"] == {"bad_line:": 2, "bad_encoding:": 1}

    from tfstream.pipelines.write.run import PreprocessError

    strict = _csv_job(make_job, path, validation={"max_bad_fraction": 0})
    with pytest.raises(PreprocessError, match=r"^3 of 43 rows \(6.98%\) break a rule, more than "
                                              r"validation.max_bad_fraction 0\. Worst: bad_line: x2 \(first: "
                                              + path.name.replace(".", r"\.") + r": row 11 \(line 12\)"):
        preprocess(strict, output_dir=str(tmp_path / "strict"))


def test_rows_of_a_valid_csv_are_read_by_pyarrow_alone(make_job, tmp_path, monkeypatch):
    from tfstream.pipelines.write import csv_source

    def refuse(*args, **kwargs):
        raise AssertionError("a valid file took the csv module's path")

    monkeypatch.setattr(csv_source, "_python_chunks", refuse)
    path = tmp_path / "ok.csv"
    path.write_text("x,n,who,y\n" + "".join(f"{i}.5,{i},w,{i}\n" for i in range(100)), encoding="utf-8")
    assert len(_rows(path, _csv_job(make_job, path))) == 100


# --------------------------------------------------------------------------- numbers


def _rules(dtype):
    return RowRules((FeatureRule(Feature("x", "numeric", dtype), ("x",)),), LabelRule(Label("y", "regression"), "y"))


@pytest.mark.parametrize("text", ["1_000", "٣", "１２", "1\u00a0", "\u20032", "1_0.5", "1e1_0"])
@pytest.mark.parametrize("dtype, expected", [("float32", "a number"), ("int64", "an integer")])
def test_numbers_outside_the_strict_grammar_are_rejected(text, dtype, expected):
    with pytest.raises(RowError) as e:
        convert_row({"x": text, "y": "1"}, _rules(dtype))
    assert str(e.value) == (f"column 'x': expected {expected}, got {text!r} (numbers are read in ASCII digits 0-9, "
                            f"with an optional sign, '.' and exponent)")
    assert e.value.reason == ("not_a_number" if dtype == "float32" else "not_an_integer")


@pytest.mark.parametrize("text, value", [("1", 1.0), ("-1.5", -1.5), ("+.5", 0.5), ("5.", 5.0), ("1e3", 1000.0),
                                         ("2.5E-1", 0.25), (" 7 ", 7.0), ("\t-0\n", 0.0), (b"3.25", 3.25)])
def test_numbers_in_the_grammar_read_as_before(text, value):
    assert convert_row({"x": text, "y": "1"}, _rules("float32"))[0]["x"] == value == float(text)


def test_integers_in_the_grammar_read_as_before():
    for text, value in [("12", 12), ("-3", -3), ("+4", 4), ("3.0", 3), ("1e3", 1000), (" 5", 5),
                        ("9007199254740993", 9007199254740993)]:
        assert convert_row({"x": text, "y": "1"}, _rules("int64"))[0]["x"] == value
    with pytest.raises(RowError, match=r"^column 'x': expected an integer, got 'abc'$"):  # no hint: not a number
        convert_row({"x": "abc", "y": "1"}, _rules("int64"))


@pytest.mark.parametrize("text", ["inf", "-Infinity", "+INF", "nan", "-NaN", "iNfInItY"])
def test_nan_and_inf_spellings_are_kept(text):
    rule = FeatureRule(Feature("x", "numeric", "float32"), ("x",), on_nan="impute")
    row, _ = convert_row({"x": text, "y": "1"}, RowRules((rule,), LabelRule(Label("y", "regression"), "y"), ()))
    assert row["__notes__"] == {"non_finite": ("x",)}


def test_text_sequences_follow_the_grammar():
    rules = RowRules((FeatureRule(Feature("s", "sequence", "float32", (2,)), ("s",)),),
                     LabelRule(Label("y", "regression"), "y"))
    assert convert_row({"s": [["1", "2.5"]], "y": "1"}, rules)[0]["s"].tolist() == [[1.0, 2.5]]
    with pytest.raises(RowError, match=r"column 's': not a sequence of numbers \('1_0' is not a number \(numbers"):
        convert_row({"s": [["1", "1_0"]], "y": "1"}, rules)


def test_numbers_outside_the_grammar_are_quarantined(make_job, tmp_path):
    path = tmp_path / "digits.csv"
    path.write_text("x,who,n,y\n1.5,a,1,2\n1_000,a,2,3\n2.5,b,٣,4\n3.5,b,3,٣\n4.5,c,4,5\n", encoding="utf-8")
    job = _csv_job(make_job, path, validation={"max_bad_fraction": 0.9})
    out = str(tmp_path / "out")
    m = preprocess(job, output_dir=out)
    records = {r["row"]: r for r in quarantine_records(out, m.data)}
    hint = " (numbers are read in ASCII digits 0-9, with an optional sign, '.' and exponent)"
    assert {row: (r["reason"], r["column"], r["message"]) for row, r in records.items()} == {
        2: ("not_a_number", "x", f"{path.name}: row 2: column 'x': expected a number, got '1_000'{hint}"),
        3: ("not_an_integer", "n", f"{path.name}: row 3: column 'n': expected an integer, got '٣'{hint}"),
        4: ("not_a_number", "y", f"{path.name}: row 4: column 'y': expected a number, got '٣'{hint}"),
    }
    assert (m.data["source"]["rows_written"], m.data["source"]["rows_rejected"]) == (2, 3)


# --------------------------------------------------------------------------- headers


def test_a_duplicated_header_name_is_refused(make_job, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("x,who,x,n,y\n1,a,2,3,4\n", encoding="utf-8")
    with pytest.raises(SourceError, match=r"dup.csv: the header names column\(s\) \['x'\] more than once, so which "
                                          r"one to read is ambiguous; rename or remove the duplicate column"):
        preprocess(_csv_job(make_job, path), output_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")
    path.write_text("x,who,n,y,,\n1,a,3,4,,\n", encoding="utf-8")  # an unread name twice: read as before
    job = _csv_job(make_job, path)
    check_source([str(path)], job.source, job.source_columns(), [])


def test_a_duplicated_parquet_column_is_refused(make_job, tmp_path):
    table = pa.Table.from_arrays([pa.array([1.0]), pa.array(["a"]), pa.array([2]), pa.array([3.0]), pa.array([4.0])],
                                 names=["x", "who", "n", "y", "y"])
    pq.write_table(table, tmp_path / "dup.parquet")
    job = _csv_job(make_job, tmp_path / "dup.parquet", source={"path": str(tmp_path / "dup.parquet"),
                                                              "format": "parquet"})
    with pytest.raises(SourceError, match=r"dup.parquet: the header names column\(s\) \['y'\] more than once"):
        check_source([str(tmp_path / "dup.parquet")], job.source, job.source_columns(), [])


# --------------------------------------------------------------------------- npz


def _npz_job(make_job, path, features):
    """A job on an npz file with one row per entry of every array (no lengths_key)."""
    sequences = any(f["type"] == "sequence" for f in features)
    return make_job("seed_lstm.yaml" if sequences else "seed_dense.yaml", source={"path": str(path)},
                    features=features, label={"column": "y", "task": "multiclass", "num_classes": 3})


def _check(job):
    from tfstream.pipelines.write.sources import resolve_source_paths

    check_source(resolve_source_paths(job.source), job.source, job.source_columns(), job.sequence_columns(),
                 rules=job.row_rules())


def test_complex_npz_arrays_are_refused(make_job, tmp_path):
    path = tmp_path / "complex.npz"
    np.savez(path, v=np.ones(4, np.complex64), y=np.arange(4) % 3)
    job = _npz_job(make_job, path, [{"name": "v", "type": "float"}])
    with pytest.raises(SourceError, match=r"complex.npz: array 'v' holds complex numbers \(dtype complex64\); "
                                          r"tfstream stores real numbers and would keep only the real part: save the "
                                          r"real and imaginary parts as two arrays"):
        check_source([str(path)], job.source, job.source_columns(), [])  # with or without the rules
    with pytest.raises(SourceError, match=r"complex.npz: array 'v' holds complex numbers"):
        preprocess(job, output_dir=str(tmp_path / "out"))  # before the pipeline: nothing written
    assert not os.path.exists(tmp_path / "out")


@pytest.mark.parametrize("features, arrays, message", [
    ([{"name": "v", "type": "float", "shape": [10]}], {"v": np.zeros((6, 5, 2))},
     r"array 'v' has shape \(6, 5, 2\), so a row of it has shape \(5, 2\), but feature 'v' declares `shape: \[10\]`; "
     r"tfstream reads a row as a scalar or a vector: reshape the array so that a row is \(10,\) and set "
     r"`shape: \[10\]` on it, or fix the array"),
    ([{"name": "v", "type": "float", "shape": [4]}], {"v": np.zeros((6, 3))},
     r"array 'v' has shape \(6, 3\), so a row of it has shape \(3,\), but feature 'v' declares `shape: \[4\]`; "
     r"set `shape: \[3\]` on it, or fix the array"),
    ([{"name": "v", "type": "float"}], {"v": np.zeros((6, 3))},
     r"array 'v' has shape \(6, 3\), so a row of it has shape \(3,\), but feature 'v' declares a scalar "
     r"\(no `shape`\); set `shape: \[3\]` on it to read a vector"),
    ([{"name": "v", "type": "float"}], {"v": np.zeros(6), "y": np.zeros((6, 2), int)},
     r"array 'y' has shape \(6, 2\), so a row of it has shape \(2,\), but the label declares one value per row; "
     r"save one value per row"),
    ([{"name": "s", "type": "sequence", "column": "X", "dim": 13}], {"X": np.zeros((6, 4, 12))},
     r"array 'X' has shape \(6, 4, 12\), so a step of it has shape \(12,\), but feature 's' declares `dim: 13`; "
     r"set `dim: 12` on it"),
])
def test_npz_arrays_must_have_the_declared_shape(make_job, tmp_path, features, arrays, message):
    path = tmp_path / "shape.npz"
    np.savez(path, **{"y": np.arange(6) % 3, **arrays})
    with pytest.raises(SourceError, match=r"shape.npz: " + message):
        _check(_npz_job(make_job, path, features))


def test_npz_sequence_steps_must_have_the_declared_dim(make_job, tmp_path):
    path = tmp_path / "seq.npz"
    np.savez(path, X=np.zeros((9, 12), np.float32), lengths=np.array([4, 5]), y=np.array([0, 1]))
    job = make_job("digits_lstm.yaml", source={"path": str(path)})
    with pytest.raises(SourceError, match=r"seq.npz: array 'X' has shape \(9, 12\), so a step of it has shape "
                                          r"\(12,\), but feature 'mfcc' declares `dim: 13`; set `dim: 12` on it"):
        _check(job)


def test_npz_shapes_that_match_pass(make_job, tmp_path):
    path = tmp_path / "ok.npz"
    np.savez(path, v=np.zeros((6, 3)), w=np.zeros((6, 1)), a=np.zeros(6), b=np.zeros(6), c=np.array(list("abcdef")),
             X=np.zeros((6, 4, 1)), y=(np.arange(6) % 3).reshape(6, 1))
    features = [{"name": "v", "type": "float", "shape": [3]}, {"name": "w", "type": "float"},
                {"name": "ab", "type": "float", "columns": ["a", "b"], "shape": [2]},
                {"name": "c", "type": "string"}, {"name": "s", "type": "sequence", "column": "X", "dim": 1}]
    _check(_npz_job(make_job, path, features))  # axes of size 1 aside: (6, 1) is a scalar per row


def test_the_shipped_npz_configs_pass_the_shape_check(make_job, digits_npz):
    _check(make_job("digits_lstm.yaml", source={"path": digits_npz}))


def test_npz_shape_check_reads_headers_only(make_job, tmp_path, monkeypatch):
    """The driver reads the .npy headers, not the data (only the lengths array is loaded)."""
    path = tmp_path / "big.npz"
    np.savez(path, v=np.zeros((1000, 5, 2), np.float32), y=np.zeros(1000, int))
    loaded = []
    real = np.lib.format.read_array
    monkeypatch.setattr(np.lib.format, "read_array", lambda *a, **k: loaded.append(a) or real(*a, **k))
    with pytest.raises(SourceError, match=r"big.npz: array 'v' has shape \(1000, 5, 2\)"):
        _check(_npz_job(make_job, path, [{"name": "v", "type": "float", "shape": [10]}]))
    assert loaded == []


def test_bad_utf8_in_a_column_not_read_is_judged_as_pyarrow_judges_it(make_job, tmp_path):
    """A bad byte in a column the job does not read rejects no row, whether or not an
    earlier bad line sent the rest of the file through Python's csv module."""
    good = [f"{i}.5,{i},w{i % 3},{i},note{i}" for i in range(1, 21)]
    for earlier_bad_line in (False, True):
        lines = ["x,n,who,y,note", *good[:5], *(["6.5,6"] if earlier_bad_line else []), *good[5:]]
        data = ("\n".join(lines) + "\n").encode().replace(b"note12", b"no\xffte12")  # the unread column
        path = tmp_path / f"unread-{earlier_bad_line}.csv"
        path.write_bytes(data)
        m = preprocess(_csv_job(make_job, path, validation={"max_bad_fraction": 0.1}),
                       output_dir=str(tmp_path / f"out-{earlier_bad_line}"))
        src = m.data["source"]
        assert (src["rows_written"], src["rows_rejected"]) == (20, int(earlier_bad_line)), src
        assert "bad_encoding:" not in src["rejected"]
