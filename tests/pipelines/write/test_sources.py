"""Bad sources fail before or during the pipeline with an error that names the file,
the row and the column."""

import gzip
import os
import zipfile

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from tfstream.pipelines.write.beam_pipeline import PreprocessError, preprocess
from tfstream.pipelines.write.sources import SourceError, check_source, read_chunks


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_missing_columns_are_all_listed(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv)
    header = lines[0].split(",")
    keep = [i for i, c in enumerate(header) if c not in ("carrier", "dest")]
    cut = _write_lines(tmp_path / "cut.csv", [",".join(l.split(",")[i] for i in keep) for l in lines[:50]])
    job = make_job("flights_dense.yaml", source={"path": cut})
    with pytest.raises(SourceError, match=r"cut.csv: missing required column\(s\) \['carrier', 'dest'\]; the file has"):
        preprocess(job, output_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_empty_file_and_header_only(flights_csv, make_job, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty.csv: the file is empty; expected a header line and data rows"):
        preprocess(make_job("flights_dense.yaml", source={"path": str(empty)}), output_dir=str(tmp_path / "o1"))
    header_only = _write_lines(tmp_path / "header.csv", _lines(flights_csv)[:1])
    with pytest.raises(SourceError, match=r"header.csv: the file has a header but no data rows"):
        preprocess(make_job("flights_dense.yaml", source={"path": header_only}), output_dir=str(tmp_path / "o2"))


def test_wrong_type_names_file_row_and_column(flights_csv, make_job, tmp_path):
    lines = _lines(flights_csv)[:40]
    header = lines[0].split(",")
    cells = lines[17].split(",")
    cells[header.index("distance")] = "far"
    lines[17] = ",".join(cells)
    bad = _write_lines(tmp_path / "bad.csv", lines)
    with pytest.raises(PreprocessError, match=r"bad.csv: row 17: column 'distance': expected a number, got 'far'"):
        preprocess(make_job("flights_dense.yaml", source={"path": bad}), output_dir=str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out" / "manifest.json")


def test_csv_zip_gzip_and_parquet_read_the_same_rows(flights_csv, tmp_path, make_job):
    lines = _lines(flights_csv)[:300]
    plain = _write_lines(tmp_path / "f.csv", lines)
    with zipfile.ZipFile(tmp_path / "f.csv.zip", "w") as z:
        z.write(plain, "f.csv")
    with gzip.open(tmp_path / "f.csv.gz", "wb") as g:
        g.write(open(plain, "rb").read())
    pq.write_table(pcsv.read_csv(plain), tmp_path / "f.parquet")  # typed columns, nulls for NA

    job = make_job("flights_dense.yaml")
    columns = job.source_columns()

    def months(path, fmt):
        source = make_job("flights_dense.yaml", source={"path": path, "format": fmt}).source
        check_source([path], source, columns, [])
        return [int(m) for _, _, chunk in read_chunks(path, source=source, columns=columns) for m in chunk["month"]]

    expected = [int(line.split(",")[1]) for line in lines[1:]]
    for path, fmt in [(plain, "csv"), (str(tmp_path / "f.csv.zip"), "csv"), (str(tmp_path / "f.csv.gz"), "csv"),
                      (str(tmp_path / "f.parquet"), "parquet")]:
        assert months(path, fmt) == expected, path

    # End to end, CSV and Parquet give the same split sizes: the split hashes raw key values.
    m_csv = preprocess(make_job("flights_dense.yaml", source={"path": plain}), output_dir=str(tmp_path / "csv"))
    m_pq = preprocess(make_job("flights_dense.yaml", source={"path": str(tmp_path / "f.parquet"), "format": "parquet"}),
                      output_dir=str(tmp_path / "pq"))
    assert {s: m_csv.num_examples(s) for s in m_csv.split_names} == {s: m_pq.num_examples(s) for s in m_pq.split_names}
    assert m_csv.data["source"]["rows_dropped"] == m_pq.data["source"]["rows_dropped"]


def test_parquet_missing_column(tmp_path, make_job):
    pq.write_table(pa.table({"month": [1, 2], "day": [3, 4]}), tmp_path / "t.parquet")
    job = make_job("flights_dense.yaml", source={"path": str(tmp_path / "t.parquet"), "format": "parquet"})
    with pytest.raises(SourceError, match=r"t.parquet: missing required column\(s\) \['arr_delay', 'carrier'"):
        preprocess(job, output_dir=str(tmp_path / "out"))


def test_npz_layout_errors(tmp_path, make_job):
    path = tmp_path / "bad.npz"
    np.savez(path, X=np.zeros((10, 13), np.float32), lengths=np.array([4, 5]), y=np.array([0, 1]))
    job = make_job("digits_lstm.yaml", source={"path": str(path)})
    with pytest.raises(SourceError, match=r"bad.npz: array 'X' has 10 rows; expected sum\(lengths\) = 9"):
        preprocess(job, output_dir=str(tmp_path / "o1"))
    np.savez(path, X=np.zeros((9, 13), np.float32), lengths=np.array([4, 5]))
    with pytest.raises(SourceError, match=r"bad.npz: missing required column\(s\) \['y'\]"):
        preprocess(job, output_dir=str(tmp_path / "o2"))


def test_empty_sequence_is_an_error_naming_the_row(tmp_path, make_job):
    path = tmp_path / "seq.npz"
    np.savez(path, X=np.ones((7, 13), np.float32), lengths=np.array([4, 0, 3]), y=np.array([0, 1, 2]))
    with pytest.raises(PreprocessError, match=r"seq.npz: row 2: column 'X': the sequence is empty"):
        preprocess(make_job("digits_lstm.yaml", source={"path": str(path)}), output_dir=str(tmp_path / "o"))


def test_ragged_row_and_bad_utf8_are_quarantined_with_file_and_line(flights_csv, make_job, tmp_path):
    from tfstream.pipelines.manifest import quarantine_records

    lines = _lines(flights_csv)[:60]
    lines[33] += ",extra"
    ragged = _write_lines(tmp_path / "ragged.csv", lines)
    m = preprocess(make_job("flights_dense.yaml", source={"path": ragged}, validation={"max_bad_fraction": 0.1}),
                   output_dir=str(tmp_path / "o1"))
    [bad] = [r for r in quarantine_records(str(tmp_path / "o1"), m.data) if r["reason"] == "bad_line"]
    assert (bad["row"], bad["lines"], bad["reason"], bad["action"]) == (33, "34", "bad_line", "rejected")
    assert bad["message"] == "ragged.csv: row 33 (line 34): expected 19 fields like the header, got 20"
    assert m.data["source"]["rows_read"] == 59 and m.data["source"]["rejected"]["bad_line:"] == 1
    data = "\n".join(_lines(flights_csv)[:30]).encode() + b"\n2013,1,1,\xff\xfe,515\n"
    (tmp_path / "latin.csv").write_bytes(data)
    with pytest.raises(PreprocessError, match=r"latin.csv: row 30 \(line 31\): invalid UTF-8"):
        preprocess(make_job("flights_dense.yaml", source={"path": str(tmp_path / "latin.csv")},
                            validation={"max_bad_fraction": 0}), output_dir=str(tmp_path / "o2"))


def test_quoted_header_and_blank_lines(tmp_path, make_job):
    path = tmp_path / "q.csv"
    path.write_text('"x","full name",y\n\n1.5,"Doe, J",2\n2.5,"Roe, R",3\n', encoding="utf-8")
    job = make_job("flights_dense.yaml", source={"path": str(path)},
                   features=[{"name": "x", "type": "float"}, {"name": "who", "type": "string", "column": "full name"}],
                   label={"column": "y", "task": "regression", "name": "target", "threshold": None,
                          "on_missing": "error"},
                   split={"key": [], "fractions": {"train": 1.0}}, output={"num_shards": {}},
                   train={"validation_split": None, "eval_split": "train"})
    m = preprocess(job, output_dir=str(tmp_path / "out"))
    assert m.data["source"]["rows_written"] == 2
    assert m.data["splits"]["train"]["statistics"]["features"]["who"]["vocabulary"] == [["Doe, J", 1], ["Roe, R", 1]]


def test_header_names_are_taken_as_written(tmp_path, make_job):
    path = tmp_path / "spaced.csv"
    path.write_text("x, y\n1,2\n", encoding="utf-8")
    job = make_job("flights_dense.yaml", source={"path": str(path)}, features=[{"name": "x", "type": "float"}],
                   label={"column": "y", "task": "regression", "name": "target", "threshold": None},
                   split={"key": []}, output={"num_shards": {}}, train={"validation_split": None})
    with pytest.raises(SourceError, match=r"spaced.csv: missing required column\(s\) \['y'\]; the file has \['x', ' y'\]"):
        preprocess(job, output_dir=str(tmp_path / "out"))


def test_npz_object_arrays_are_refused_on_the_driver(tmp_path, make_job):
    path = tmp_path / "obj.npz"
    X = np.empty(2, dtype=object)
    X[0], X[1] = np.ones((2, 13)), np.ones((3, 13))
    np.savez(path, X=X, lengths=np.array([2, 3]), y=np.array([0, 1]))
    with pytest.raises(SourceError, match=r"obj.npz: array 'X' holds Python objects \(dtype object\)"):
        preprocess(make_job("digits_lstm.yaml", source={"path": str(path)}), output_dir=str(tmp_path / "o"))
    assert not os.path.exists(tmp_path / "o")
