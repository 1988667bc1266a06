"""Spans: found by the {span} of source.path, ordered by name, cut by --until."""

import pytest

from tfstream.pipelines.config import ConfigError
from tfstream.spans import find_spans


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x,y\n1,2\n")


def test_spans_are_found_ordered_and_cut(tmp_path):
    for span in ("2013-02", "2013-01", "2013-10"):
        _touch(tmp_path / "raw" / f"span={span}" / "part-0.csv")
        _touch(tmp_path / "raw" / f"span={span}" / "part-1.csv")
    _touch(tmp_path / "raw" / "span=2013-03" / "notes.txt")  # not a match of the glob
    (tmp_path / "raw" / "span=2013-04").mkdir()  # no file yet: not a span
    spans = find_spans(str(tmp_path / "raw" / "span={span}" / "*.csv"))
    assert [s.name for s in spans] == ["2013-01", "2013-02", "2013-10"]
    assert [len(s.files) for s in spans] == [2, 2, 2] and spans[0].files == tuple(sorted(spans[0].files))
    assert [s.name for s in find_spans(str(tmp_path / "raw" / "span={span}" / "*.csv"), until="2013-02")] == \
        ["2013-01", "2013-02"]


def test_a_span_in_a_file_name_and_odd_names(tmp_path, caplog):
    for name in ("2024-06-01", "2024-06-02", "bad name"):
        _touch(tmp_path / f"flights_{name}.csv")
    spans = find_spans(str(tmp_path / "flights_{span}.csv"))
    assert [s.name for s in spans] == ["2024-06-01", "2024-06-02"]
    assert "bad name" in caplog.text


def test_a_pattern_without_its_placeholder_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"mark the span in the path with \{span\}"):
        find_spans(str(tmp_path / "*.csv"))


def test_a_negated_glob_class(tmp_path):
    for name in ("a1", "b1"):
        _touch(tmp_path / f"span={name}" / "x.csv")
    assert [s.name for s in find_spans(str(tmp_path / "span={span}" / "[!b]*.csv"))] == ["a1", "b1"]
    assert [s.name for s in find_spans(str(tmp_path / "span=[!b]{span}" / "x.csv"))] == ["1"]
