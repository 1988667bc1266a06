"""The manifest says how records are encoded: a reader holding only the files builds the
parse spec from ``manifest.json`` alone (issue 13, point 8)."""

import glob
import json
import os

import pytest
import tensorflow as tf

from tfstream.pipelines.manifest import load_manifest
from tfstream.transforms.schema import length_key, parse_spec_from_json


@pytest.mark.parametrize("dataset", ["flights_dataset", "digits_dataset"])
def test_the_manifest_alone_parses_every_key_of_the_records(dataset, request):
    root = request.getfixturevalue(dataset)
    with open(os.path.join(root, "manifest.json"), encoding="utf-8") as f:
        data = json.load(f)
    encoding = data["encoding"]
    manifest = load_manifest(root)
    assert encoding == manifest.encoding
    # every key a record holds is described, with a dtype and a shape per record
    assert [k["key"] for k in encoding["keys"]] == manifest.schema.record_keys()
    spec = parse_spec_from_json(encoding["parse_spec"])
    assert spec == manifest.schema.parse_spec()

    # a reader with only the files: the shard names and the spec from the JSON
    shards = [os.path.join(root, s["file"]) for s in data["splits"]["train"]["shards"]]
    compression = "GZIP" if "gzip" in encoding["file"] else ""
    batch = next(iter(tf.data.TFRecordDataset(shards, compression_type=compression).batch(64)
                      .map(lambda b: tf.io.parse_example(b, spec))))
    for key in encoding["keys"]:
        value = batch[key["key"]]
        assert value.dtype == tf.dtypes.as_dtype(key["dtype"]), key
        if None in key["shape"]:  # a sequence: [batch, (steps), dim]; its length key agrees
            assert value.shape[-1] == key["shape"][-1]
            lengths = batch[length_key(key["key"])].numpy().tolist()
            assert value.row_lengths().numpy().tolist() == lengths
        else:
            assert list(value.shape[1:]) == key["shape"], key


def test_a_manifest_without_encoding_derives_it(flights_dataset, tmp_path):
    """Manifests written before the encoding was recorded still answer."""
    import shutil

    copy = str(tmp_path / "old")
    shutil.copytree(flights_dataset, copy)
    path = os.path.join(copy, "manifest.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    expected = data.pop("encoding")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    assert load_manifest(copy).encoding == expected
    assert glob.glob(os.path.join(copy, "snapshots", "*"))


def test_the_readmes_ten_line_reader_works(flights_dataset):
    """The README's snippet: a spec built from the manifest's JSON with two lines."""
    with open(os.path.join(flights_dataset, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    spec = {k: tf.io.FixedLenFeature(v["shape"], v["dtype"]) for k, v in manifest["encoding"]["parse_spec"].items()}
    files = [os.path.join(flights_dataset, s["file"]) for s in manifest["splits"]["train"]["shards"]]
    compression = "GZIP" if "gzip" in manifest["encoding"]["file"] else ""
    ds = tf.data.TFRecordDataset(files, compression_type=compression).batch(512).map(
        lambda s: tf.io.parse_example(s, spec))
    assert sum(int(b[manifest["schema"]["label"]["name"]].shape[0]) for b in ds) == \
        manifest["splits"]["train"]["num_examples"]
