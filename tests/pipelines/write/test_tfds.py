"""TensorFlow-Datasets compatibility: tfstream datasets load with `tfds.builder_from_directory`
(pipelines/tfds_metadata.py), and a prepared TFDS dataset is a preprocessing source
(`source: {tfds: NAME, data_dir: DIR}`, pipelines/sources.py)."""

import json
import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.pipelines.config import ConfigError, SourceConfig, config_from_dict
from tfstream.pipelines.write.sources import resolve_source_paths
from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.write.sources import SourceError, check_source, read_chunks
from tfstream.pipelines.write.tfds_metadata import write_tfds_metadata
from tfstream.transforms.codecs import decode_example
from tfstream.transforms.schema import length_key

# --------------------------------------------------------------------------- helpers


def _copy(dataset_dir, tmp_path, name="ds"):
    out = tmp_path / name
    shutil.copytree(dataset_dir, out)
    return str(out)


def _stored(manifest, split, n):
    """The first ``n`` records of a split, in shard order, decoded by tfstream."""
    ds = tf.data.TFRecordDataset(manifest.shard_paths(split)).take(n)
    return [decode_example(r, manifest.schema) for r in ds.as_numpy_iterator()]


def _assert_same(tfds_example, stored):
    assert set(tfds_example) == set(stored)
    for key, value in stored.items():
        got = tfds_example[key]
        if isinstance(got, bytes):
            got = got.decode("utf-8")
        np.testing.assert_array_equal(np.asarray(got), np.asarray(value), err_msg=key)


@pytest.fixture(scope="module")
def tabular_dataset(flights_csv, make_job, tmp_path_factory):
    """A small uncompressed tabular dataset (the test fixture `flights_job` writes gzip)."""
    root = tmp_path_factory.mktemp("tfds_tabular")
    with open(flights_csv, encoding="utf-8") as f:
        lines = f.readlines()[:400]
    (root / "flights.csv").write_text("".join(lines), encoding="utf-8")
    job = make_job("flights_dense.yaml", source={"path": str(root / "flights.csv")},
                   output={"compression": "none", "num_shards": {"train": 3, "validation": 1, "eval": 1}})
    out = str(root / "dataset")
    preprocess(job, output_dir=out)
    return out


# --------------------------------------------------------------------------- metadata


def test_tabular_dataset_loads_with_tfds(tabular_dataset, tmp_path):
    ds_dir = _copy(tabular_dataset, tmp_path)
    m = load_manifest(ds_dir)
    written = write_tfds_metadata(ds_dir, m.data)
    assert [os.path.basename(p) for p in written] == ["features.json", "late.labels.txt", "dataset_info.json"]

    builder = tfds.builder_from_directory(ds_dir)
    for split in m.split_names:
        assert builder.info.splits[split].num_examples == m.num_examples(split)
        assert builder.info.splits[split].shard_lengths == [s["records"] for s in m.data["splits"][split]["shards"]]
    assert builder.info.features["late"].names == list(m.schema.label.classes)
    assert builder.info.features["carrier"].dtype == tf.string

    for split in ("train", "eval"):
        got = list(tfds.as_numpy(builder.as_dataset(split=split).take(5)))
        for example, stored in zip(got, _stored(m, split, 5)):
            _assert_same(example, stored)
    # as_supervised gives (features, label), like tfstream's own reader.
    features, label = next(iter(builder.as_dataset(split="eval", as_supervised=True)))
    assert set(features) == {f.name for f in m.schema.features} and label.dtype == tf.int64


def test_sequence_dataset_loads_with_tfds(digits_dataset, tmp_path):
    ds_dir = _copy(digits_dataset, tmp_path)
    m = load_manifest(ds_dir)
    write_tfds_metadata(ds_dir, m.data)
    builder = tfds.builder_from_directory(ds_dir)
    assert {s: builder.info.splits[s].num_examples for s in m.split_names} == \
        {s: m.num_examples(s) for s in m.split_names}
    assert builder.info.features["mfcc"].shape == (None, 13)

    got = list(tfds.as_numpy(builder.as_dataset(split="train").take(8)))
    for example, stored in zip(got, _stored(m, "train", 8)):
        assert example["mfcc"].shape == (stored[length_key("mfcc")], 13)  # [steps, dim], not flat
        _assert_same(example, stored)
    # Batched with padding, as tfds users do for variable-length features.
    batch = next(iter(builder.as_dataset(split="eval").padded_batch(4)))
    assert batch["mfcc"].shape[0] == 4 and batch["mfcc"].shape[2] == 13


def test_gzip_dataset_gets_no_metadata(flights_dataset, tmp_path, caplog):
    ds_dir = _copy(flights_dataset, tmp_path)
    m = load_manifest(ds_dir)
    assert m.compression == "gzip"
    # TFDS metadata of an earlier, uncompressed run would describe shards that are gone.
    stale = os.path.join(ds_dir, "dataset_info.json")
    with open(stale, "w", encoding="utf-8") as f:
        f.write("{}")
    with caplog.at_level(logging.WARNING, logger="tfstream.pipelines.write.tfds_metadata"):
        assert write_tfds_metadata(ds_dir, m.data) == []
    assert "gzip-compressed, which tensorflow-datasets cannot read; set `output.compression: none`" in caplog.text
    assert not os.path.exists(stale) and not os.path.exists(os.path.join(ds_dir, "features.json"))


def test_class_names_a_labels_file_cannot_hold(digits_dataset, tmp_path, caplog):
    ds_dir = _copy(digits_dataset, tmp_path)
    data = json.loads(json.dumps(load_manifest(ds_dir).data))
    (tmp_path / "ds" / "digit.labels.txt").write_text("stale\n")
    data["schema"]["label"]["classes"] = [" zero"] + [str(i) for i in range(1, 10)]
    with caplog.at_level(logging.WARNING, logger="tfstream.pipelines.write.tfds_metadata"):
        written = write_tfds_metadata(ds_dir, data)
    assert "digit.labels.txt" not in " ".join(written) and "10 unnamed classes" in caplog.text
    label = tfds.builder_from_directory(ds_dir).info.features["digit"]
    assert label.num_classes == 10 and label.names == [str(i) for i in range(10)]


def test_writer_does_not_import_tensorflow(digits_dataset, tmp_path):
    ds_dir = _copy(digits_dataset, tmp_path)
    code = (
        "import sys; from tfstream.pipelines.manifest import load_manifest; "
        "from tfstream.pipelines.write.tfds_metadata import write_tfds_metadata; "
        f"write_tfds_metadata({ds_dir!r}, load_manifest({ds_dir!r}).data); "
        "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert os.path.exists(os.path.join(ds_dir, "dataset_info.json"))


# --------------------------------------------------------------------------- TFDS source

CLASSES = ["cat", "dog", "owl"]


def _example(i):
    return {"x": i * 0.5, "n": i, "word": f"w{i}é", "vec": [i, -i], "flag": i % 2 == 0,
            "seq": np.full((i % 3 + 1, 3), i, np.float32), "label": CLASSES[i % 3]}


class TinyTable(tfds.core.GeneratorBasedBuilder):
    """Numbers, text, a vector, a bool, a sequence and a class label; no download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "x": np.float32,
            "n": np.int64,
            "word": tfds.features.Text(),
            "vec": tfds.features.Tensor(shape=(2,), dtype=np.float32),
            "flag": np.bool_,
            "seq": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
            "label": tfds.features.ClassLabel(names=CLASSES),
        }))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(range(0, 12)), "test": self._generate_examples(range(12, 16))}

    def _generate_examples(self, ids):
        for i in ids:
            yield i, _example(i)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds_data")
    TinyTable(data_dir=str(data_dir)).download_and_prepare()
    return str(data_dir)


def _tfds_job(data_dir, **source):
    return config_from_dict({
        "name": "tiny",
        "source": {"tfds": "tiny_table", "data_dir": data_dir, **source},
        "features": [{"name": "x", "type": "float"}, {"name": "n", "type": "int"},
                     {"name": "word", "type": "string"}, {"name": "vec", "type": "float", "shape": [2]},
                     {"name": "flag", "type": "int"}],
        "label": {"column": "label", "task": "multiclass", "num_classes": 3},
        "split": {"fractions": {"train": 0.5, "eval": 0.5}},
        "output": {"num_shards": {"train": 1, "eval": 1}},
        "model": {"type": "dense"},
    })


def test_preprocess_reads_a_prepared_tfds_dataset(tfds_dir, tmp_path):
    job = _tfds_job(tfds_dir)
    paths = resolve_source_paths(job.source)
    assert [os.path.basename(p) for p in paths] == ["tiny_table-train.tfrecord-00000-of-00001",
                                                    "tiny_table-test.tfrecord-00000-of-00001"]
    m = preprocess(job, output_dir=str(tmp_path / "out"))
    assert m.data["source"]["rows_read"] == m.data["source"]["rows_written"] == 16
    assert sum(m.num_examples(s) for s in m.split_names) == 16
    assert [f["name"] for f in m.data["source"]["fingerprint"]["files"]] == [os.path.basename(p) for p in paths]

    rows = {}
    for split in m.split_names:
        for r in tf.data.TFRecordDataset(m.shard_paths(split)).as_numpy_iterator():
            row = decode_example(r, m.schema)
            rows[row["n"]] = row
    assert sorted(rows) == list(range(16))
    for i, row in rows.items():
        want = _example(i)
        assert row["x"] == want["x"] and row["word"] == want["word"] and row["flag"] == int(want["flag"])
        assert row["vec"].tolist() == want["vec"] and row["label"] == CLASSES.index(want["label"])

    m = preprocess(_tfds_job(tfds_dir, tfds_split="test"), output_dir=str(tmp_path / "test_only"))
    assert m.data["source"]["rows_read"] == 4


def test_a_tfds_source_is_measured_from_its_split_sizes(tfds_dir, tmp_path):
    """Its rows from dataset_info.json, its records' size from the first shard's rows."""
    from tfstream.pipelines.write.source_size import measure_source

    for split, rows in ((None, 16), ("test", 4)):
        job = _tfds_job(tfds_dir, **({"tfds_split": split} if split else {}))
        size = measure_source(resolve_source_paths(job.source), job)
        assert (size.rows, size.rows_exact) == (rows, True)
    job = config_from_dict({**job.to_json(), "output": {"num_shards": {"train": 1}}})  # eval's count is planned
    m = preprocess(job, output_dir=str(tmp_path / "out"))
    written = sum(s["record_bytes"] + 16 * s["records"] for split in m.split_names
                  for s in m.data["splits"][split]["shards"])
    assert size.record_bytes == written / 4  # the 4 test rows, all sampled
    assert m.data["splits"]["eval"]["shard_sizing"] == {
        "source": "default", "target_shard_mb": 128, "estimated_rows": 2, "estimated_bytes": written // 2,
        "rows_exact": True}


def test_tfds_sequences_and_versions(tfds_dir):
    source = SourceConfig(tfds="tiny_table:1.0.0", data_dir=tfds_dir, tfds_split="train")
    paths = resolve_source_paths(source)
    check_source(paths, source, ["seq", "n", "word"], ["seq"])
    chunks = list(read_chunks(paths[0], source=source, columns=["seq", "n", "word"], sequence_columns=["seq"],
                              chunk_rows=5))
    assert [(first, len(c["n"])) for _, first, c in chunks] == [(1, 5), (6, 5), (11, 2)]
    for _, _, chunk in chunks:
        for n, seq, word in zip(chunk["n"], chunk["seq"], chunk["word"]):
            np.testing.assert_array_equal(seq, _example(n)["seq"])  # (steps, 3)
            assert isinstance(n, int) and word == f"w{n}é"


def test_tfds_source_errors(tfds_dir, tmp_path):
    job = _tfds_job(tfds_dir)
    with pytest.raises(SourceError, match=r"tiny_table/1.0.0: missing required column\(s\) \['colour', 'size'\]; "
                                          r"the TFDS dataset has the features \["):
        check_source(resolve_source_paths(job.source), job.source, ["x", "size", "colour"], [])
    with pytest.raises(SourceError, match=r"'seq' has shape \(None, 3\); a feature column needs \(\) or a fixed "
                                          r"\(k,\), and a \(None, dim\) tensor is read as a feature of type sequence"):
        check_source(resolve_source_paths(job.source), job.source, ["seq"], [])
    with pytest.raises(SourceError, match=r"source.tfds_split 'validation': the TFDS dataset .* has the splits "
                                          r"\['train', 'test'\]"):
        resolve_source_paths(_tfds_job(tfds_dir, tfds_split="validation").source)
    with pytest.raises(FileNotFoundError, match=r"version 9.9.9 is not prepared in .*; the prepared versions are "
                                                r"\['1.0.0'\]"):
        resolve_source_paths(SourceConfig(tfds="tiny_table:9.9.9", data_dir=tfds_dir))
    with pytest.raises(FileNotFoundError, match=r"source.tfds 'tiny_table': no prepared dataset in .*empty/tiny_table "
                                                r".*prepare it first \(`tfds build tiny_table"):
        resolve_source_paths(SourceConfig(tfds="tiny_table", data_dir=str(tmp_path / "empty")))


@pytest.mark.parametrize("source, message", [
    ({"tfds": "mnist", "path": "x.csv"}, r"^source: give `path` \(files\) or `tfds` \(a prepared TFDS dataset\), not both$"),
    ({"tfds": "mnist", "format": "csv"}, r"^source.format: a tfds source has no format; remove `format: csv`$"),
    ({"tfds": "9mnist"}, r"^source.tfds: expected a TFDS dataset name, optionally with a config and a version"),
    ({"tfds": "mnist", "tfds_split": "train[:10%]"}, r"^source.tfds_split: expected a split name such as train; "
                                                     r"got 'train\[:10%\]' \(slices like"),
    ({"tfds": "mnist", "delimiter": ";"}, r"^source.delimiter: only a csv source has one; remove it$"),
    ({"format": "csv", "path": "x.csv", "data_dir": "/d"}, r"^source.data_dir: only a tfds source has one; remove it, "
                                                           r"or name the dataset in `source.tfds`$"),
    ({"path": "x.csv"}, r"^source.format: missing required key \(csv, parquet or npz; or `tfds: <name>`"),
    ({"format": "csv"}, r"^source.path: missing required key \(a file, a glob or pkg:<package>/<file>; or `splits: "
                        r"\{train: <glob>, eval: <glob>\}` for splits given per file; or `tfds"),
])
def test_bad_tfds_source_configs(source, message):
    job = {"name": "x", "source": source, "features": [{"name": "a", "type": "float"}],
           "label": {"column": "y", "task": "regression"}, "model": {"type": "dense"}}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(job)


def test_tfds_names_with_config_and_version():
    parts = {t: SourceConfig(tfds=t).tfds_parts() for t in ("mnist", "mnist:3.0.1", "mnist/3.0.1", "glue/cola:2.0.0")}
    assert parts == {"mnist": ("mnist", None, None), "mnist:3.0.1": ("mnist", None, "3.0.1"),
                     "mnist/3.0.1": ("mnist", None, "3.0.1"), "glue/cola:2.0.0": ("glue", "cola", "2.0.0")}


def test_corrupt_tfds_shard_names_the_file_and_record(tfds_dir, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tfds_dir, data_dir)
    source = SourceConfig(tfds="tiny_table", data_dir=str(data_dir), tfds_split="test")
    (shard,) = resolve_source_paths(source)
    good = open(shard, "rb").read()
    bad = bytearray(good)
    bad[20] ^= 0xFF  # inside the first record's data
    open(shard, "wb").write(bytes(bad))
    with pytest.raises(SourceError, match=r"tiny_table-test.tfrecord-00000-of-00001: record 1: checksum mismatch"):
        list(read_chunks(shard, source=source, columns=["n"]))
    open(shard, "wb").write(good[:-3])
    with pytest.raises(SourceError, match=r"truncated TFRecord file after 3 records"):
        list(read_chunks(shard, source=source, columns=["n"]))
