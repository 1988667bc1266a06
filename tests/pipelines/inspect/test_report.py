"""`tfstream inspect` tables and plots, on manifests with and without the newer fields."""

import copy
import os
import re

import pytest

from tfstream.pipelines.manifest import Manifest, ManifestError, load_manifest
from tfstream.pipelines.inspect.plots import write_plots
from tfstream.pipelines.inspect.report import format_manifest

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Fields that older manifests lack; stripped so that the "old" tests stay old whatever
# the pipeline writes now.
_NEW_FEATURE_KEYS = ("missing", "non_finite", "quantiles", "histogram", "oov_buckets", "truncated")
_NEW_SOURCE_KEYS = ("rows_rejected", "rejected", "quarantine")


def _old_style(dataset_dir: str) -> Manifest:
    m = load_manifest(dataset_dir)
    data = copy.deepcopy(m.data)
    data.pop("drift", None)
    for key in _NEW_SOURCE_KEYS:
        data["source"].pop(key, None)
    for split in data["splits"].values():
        for st in split["statistics"]["features"].values():
            for key in _NEW_FEATURE_KEYS:
                st.pop(key, None)
            if "length" in st:
                st["length"].pop("quantiles", None)
    return Manifest(data, dataset_dir)


def _new_flights(dataset_dir: str) -> Manifest:
    """The flights manifest with the newer fields filled in by hand, and a vector feature."""
    data = copy.deepcopy(_old_style(dataset_dir).data)
    train = data["splits"]["train"]["statistics"]["features"]
    train["dep_delay"].update(
        missing=7, non_finite=2,
        quantiles=[-23.0, -7.0, -5.0, -3.0, -2.0, -1.5, 2.0, 8.0, 20.0, 55.0, 373.0],
        histogram={"edges": [-23.0 + 19.8 * i for i in range(21)], "counts": [3000, 700, 300] + [20] * 17},
    )
    train["distance"]["histogram"] = {"edges": [80.0 + 245.15 * i for i in range(21)], "counts": [100] * 20}
    train["carrier"].update(missing=3, oov_buckets=1)
    # A fixed-length vector feature, so that its one-row summary is checked too.
    data["schema"]["features"].append({"name": "coords", "kind": "numeric", "dtype": "float32", "shape": [2]})
    for split in data["splits"].values():
        split["statistics"]["features"]["coords"] = {
            "kind": "numeric", "count": 10, "missing": 0, "non_finite": 0, "mean": [1.0, 3.0],
            "variance": [1.0, 1.0], "min": [0.0, 2.0], "max": [2.0, 4.0],
            "quantiles": [[0.0] * 11, [2.0] * 11],
        }
    # Newer pipelines keep vocabularies on the training split only.
    for name in ("carrier", "origin", "dest"):
        data["splits"]["validation"]["statistics"]["features"][name].pop("vocabulary", None)
        data["splits"]["validation"]["statistics"]["features"][name].pop("num_unique", None)
    data["source"].update(
        rows_rejected=12, rejected={"non_finite:distance": 9, "out_of_range:month": 3},
        quarantine=["quarantine/rows-00000-of-00001.jsonl"],
    )
    data["drift"] = {
        "against": "2024-05-01T10:00:00+00:00",
        "findings": [
            {"feature": "dep_delay", "kind": "mean_shift", "detail": "mean moved by 0.31 standard deviations",
             "value": 0.31, "threshold": 0.25, "severity": "warning"},
            {"feature": "tailnum", "kind": "removed", "detail": "feature no longer in the schema",
             "value": None, "threshold": None, "severity": "error"},
        ],
    }
    return Manifest(data, dataset_dir)


def _new_digits(dataset_dir: str) -> Manifest:
    data = copy.deepcopy(_old_style(dataset_dir).data)
    mfcc = data["splits"]["train"]["statistics"]["features"]["mfcc"]
    mfcc["truncated"] = 4
    ln = mfcc["length"]
    ln["quantiles"] = [ln["min"], 11, 13, 14, 15, 17, 18, 19, 21, 23, ln["max"]]
    return Manifest(data, dataset_dir)


def _line(text: str, pattern: str) -> str:
    match = re.search(pattern, text, re.M)
    assert match, f"no line matching {pattern!r} in:\n{text}"
    return match.group(0)


# --- format_manifest on an older manifest: the newer fields show as "-" or are left out.


def test_old_manifest_numeric_table(flights_dataset):
    m = _old_style(flights_dataset)
    text = format_manifest(m)
    st = m.data["splits"]["train"]["statistics"]["features"]["dep_delay"]
    assert "numeric features ('train' split)" in text
    # count, then missing, non-finite and p50 unknown: "-"
    row = _line(text, r"^dep_delay\s+[\d,]+\s+-\s+-\s+.*$").split()
    assert row[1] == f"{st['count']:,}"
    assert row[4:] == [f"{st['mean']:.4g}", f"{st['variance'] ** 0.5:.4g}", "-23", "-", "373"]


def test_old_manifest_vocabulary_heads(flights_dataset):
    m = _old_style(flights_dataset)
    text = format_manifest(m)
    st = m.data["splits"]["train"]["statistics"]["features"]["carrier"]
    token, count = st["vocabulary"][0]
    assert f"carrier: values {st['count']:,}, missing -, unique {st['num_unique']}, OOV buckets -" in text
    assert _line(text, rf"^{token}\s+{count:,}\s+.*%$").split()[2] == f"{100 * count / st['count']:.1f}%"
    # top 5 tokens only
    section = text[text.index("carrier: values"):text.index("origin: values")]
    assert len(re.findall(r"%$", section, re.M)) == 5


def test_old_manifest_rows_and_no_drift(flights_dataset):
    m = _old_style(flights_dataset)
    text = format_manifest(m)
    src = m.data["source"]
    assert f"{src['rows_dropped']:,} dropped (by reason below)" in text
    dropped = _line(text, r"^dropped\s+missing\s+dep_delay\s+\d+$").split()[-1]
    assert dropped == f"{src['dropped']['missing:dep_delay']:,}"
    assert "rejected" not in text and "quarantine" not in text and "drift" not in text
    assert text.rstrip().endswith("}")  # the parse spec stays last


def test_old_manifest_sequence_lengths_from_the_histogram(digits_dataset):
    m = _old_style(digits_dataset)
    text = format_manifest(m)
    ln = m.data["splits"]["train"]["statistics"]["features"]["mfcc"]["length"]
    lengths = sorted(int(k) for k, n in ln["histogram"].items() for _ in range(n))
    p50 = lengths[(len(lengths) + 1) // 2 - 1]  # lower median: the nearest rank
    row = _line(text, r"^mfcc\s+\d+\s+\d+.*$").split()
    assert row[:7] == ["mfcc", f"{ln['count']}", f"{ln['min']}", row[3], f"{p50}", row[5], f"{ln['max']}"]
    assert int(row[3]) <= p50 <= int(row[5])
    assert row[-1] == "-"  # truncated: not recorded


def test_non_train_split_of_an_old_manifest(flights_dataset):
    text = format_manifest(_old_style(flights_dataset), train_split="eval")
    assert "numeric features ('eval' split)" in text and "vocabulary heads ('eval' split" in text


# --- format_manifest on a newer manifest


def test_new_manifest_numeric_table(flights_dataset):
    text = format_manifest(_new_flights(flights_dataset))
    row = _line(text, r"^dep_delay\s+[\d,]+\s+\d+\s.*$").split()  # the numeric table, not the schema
    assert row[2:4] == ["7", "2"] and row[7] == "-1.5"  # missing, non-finite, p50
    # the vector: one row; mean of all values 2, pooled std sqrt(1 + 1), min and max over components
    assert _line(text, r"^coords\[2\]\s.*$").split() == ["coords[2]", "10", "0", "0", "2", "1.414", "0", "-", "4"]
    assert "summarized over all the values of its k components" in text


def test_new_manifest_vocabulary_rows_and_drift(flights_dataset):
    text = format_manifest(_new_flights(flights_dataset))
    assert re.search(r"^carrier: values [\d,]+, missing 3, unique 15, OOV buckets 1$", text, re.M)
    assert _line(text, r"^rows +[\d,]+ read, [\d,]+ written, [\d,]+ dropped, 12 rejected \(by reason below\)$")
    assert _line(text, r"^rejected\s+non_finite\s+distance\s+9$")
    assert _line(text, r"^rejected\s+out_of_range\s+month\s+3$")
    assert re.search(r"^quarantine: [\d,]+ row\(s\) as JSON lines \([\d,]+ dropped, 12 rejected\), in 1 file\(s\) "
                     r"under the dataset$", text, re.M)
    assert "  quarantine/rows-00000-of-00001.jsonl" in text
    assert "drift against 2024-05-01T10:00:00+00:00: 2 finding(s)" in text
    assert _line(text, r"^dep_delay\s+mean_shift\s+warning\s+0\.31\s+0\.25\s+mean moved by 0\.31 standard deviations$")
    assert _line(text, r"^tailnum\s+removed\s+error\s+-\s+-\s+feature no longer in the schema$")
    assert text.rstrip().endswith("}")


def test_new_manifest_split_without_vocabulary(flights_dataset):
    text = format_manifest(_new_flights(flights_dataset), train_split="validation")
    assert re.search(r"^carrier: values [\d,]+, missing -, unique -, OOV buckets -$", text, re.M)
    assert "no vocabulary recorded for this split (only the training split has one)" in text
    assert re.search(r"^carrier\s+categorical\s+string\s+scalar\s+[\d,]+ values; no vocabulary for this split$",
                     text, re.M)


def test_new_manifest_sequence_lengths(digits_dataset):
    m = _new_digits(digits_dataset)
    ln = m.data["splits"]["train"]["statistics"]["features"]["mfcc"]["length"]
    row = _line(format_manifest(m), r"^mfcc\s+\d+\s+\d+.*$").split()
    # p10, p50, p90: the recorded quantiles, not the ones from the histogram
    assert row[2:7] == [str(ln["min"]), "11", "17", "23", str(ln["max"])] and row[-1] == "4"


def test_drift_without_findings(flights_dataset):
    m = _old_style(flights_dataset)
    m.data["drift"] = {"against": "manifest.previous.json", "findings": []}
    assert "drift against manifest.previous.json: 0 finding(s)" in format_manifest(m)


def test_default_split(flights_dataset):
    m = _old_style(flights_dataset)
    assert m.train_split == "train"
    m.data["splits"] = {"eval": m.data["splits"]["eval"], "train": m.data["splits"]["train"]}
    assert m.train_split == "train"
    m.data["splits"].pop("train")
    assert m.train_split == "eval"


# --- write_plots


def _assert_pngs(paths, expected):
    assert sorted(os.path.basename(p) for p in paths) == sorted(expected)
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == PNG_MAGIC, path
        assert os.path.getsize(path) > 1000


def test_plots_of_a_new_manifest(flights_dataset, tmp_path):
    paths = write_plots(_new_flights(flights_dataset), str(tmp_path / "plots"))
    # numeric scalars with a histogram, and every categorical; not the vector, nor the
    # numeric features without a histogram
    _assert_pngs(paths, ["train-dep_delay-histogram.png", "train-distance-histogram.png",
                         "train-carrier-vocabulary.png", "train-origin-vocabulary.png", "train-dest-vocabulary.png"])


def test_plots_of_an_old_manifest(flights_dataset, digits_dataset, tmp_path):
    paths = write_plots(_old_style(flights_dataset), str(tmp_path))
    _assert_pngs(paths, ["train-carrier-vocabulary.png", "train-origin-vocabulary.png", "train-dest-vocabulary.png"])
    paths = write_plots(_old_style(digits_dataset), str(tmp_path / "d"), split="eval")
    _assert_pngs(paths, ["eval-mfcc-length-histogram.png"])


def test_plots_of_a_split_without_vocabularies(flights_dataset, tmp_path):
    paths = write_plots(_new_flights(flights_dataset), str(tmp_path), split="validation")
    assert paths == []  # no histograms, no vocabularies on this split: nothing to draw


def test_plots_of_an_unknown_split(flights_dataset, tmp_path):
    with pytest.raises(ManifestError, match=r"no split 'test'; the dataset has \['train', 'validation', 'eval'\]"):
        write_plots(_old_style(flights_dataset), str(tmp_path), split="test")
