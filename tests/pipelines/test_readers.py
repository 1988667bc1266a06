"""The tf.data read side: shapes, padding, determinism, and trusting only the manifest."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfstream.pipelines import readers
from tfstream.pipelines.beam_preprocess import preprocess
from tfstream.pipelines.manifest import ManifestError, load_manifest
from tfstream.pipelines.readers import read
from tfstream.transforms.codecs import decode_example


def _labels(ds):
    return np.concatenate([label.numpy() for _, label in ds])


def test_tabular_batches(flights_dataset):
    m = load_manifest(flights_dataset)
    ds = read(flights_dataset, "train", batch_size=64, seed=0)
    features, label = next(iter(ds))
    assert label.shape == (64,) and label.dtype == tf.int64
    assert features["dep_delay"].dtype == tf.float32 and features["dep_delay"].shape == (64,)
    assert features["month"].dtype == tf.int64 and features["carrier"].dtype == tf.string
    assert set(features) == {f.name for f in m.schema.features}
    n = m.num_examples("train")
    assert int(ds.cardinality()) == -(-n // 64)  # Keras gets a step count from the manifest


def test_every_record_once_per_epoch(flights_dataset):
    m = load_manifest(flights_dataset)
    ds = read(flights_dataset, "eval", batch_size=100, shuffle=False)
    labels = _labels(ds)
    assert len(labels) == m.num_examples("eval")
    counts = m.statistics("eval")["label"]["class_counts"]
    assert np.bincount(labels, minlength=2).tolist() == list(counts.values())


def test_seed_makes_the_order_reproducible(flights_dataset):
    a = _labels(read(flights_dataset, "train", batch_size=128, seed=3, shuffle_buffer=500))
    b = _labels(read(flights_dataset, "train", batch_size=128, seed=3, shuffle_buffer=500))
    c = _labels(read(flights_dataset, "train", batch_size=128, seed=4, shuffle_buffer=500))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sorted(a) == sorted(c)


def test_epochs_reshuffle(flights_dataset):
    ds = read(flights_dataset, "train", batch_size=128, seed=3, shuffle_buffer=500)
    first, second = _labels(ds), _labels(ds)
    assert sorted(first) == sorted(second) and not np.array_equal(first, second)


def test_sequences_are_right_padded_with_lengths(digits_dataset):
    ds = read(digits_dataset, "train", batch_size=16, seed=1)
    for features, label in ds.take(3):
        seq, lengths = features["mfcc"].numpy(), features["mfcc_length"].numpy()
        assert seq.shape[0] == 16 and seq.shape[2] == 13
        assert seq.shape[1] == lengths.max()  # padded to the longest sequence in the batch
        for row, n in zip(seq, lengths):
            assert np.all(row[n:] == 0)  # right padding
            assert np.any(row[n - 1] != 0)  # the last real step is data
        assert label.dtype == tf.int64


def test_memory_and_file_cache(digits_dataset, tmp_path):
    plain = _labels(read(digits_dataset, "eval", batch_size=8, shuffle=False, seed=0))
    for cache in ("memory", str(tmp_path / "cache" / "eval")):
        ds = read(digits_dataset, "eval", batch_size=8, shuffle=False, cache=cache, seed=0)
        np.testing.assert_array_equal(_labels(ds), plain)
        np.testing.assert_array_equal(_labels(ds), plain)  # second epoch from the cache
    assert any(name.startswith("eval.eval.") for name in os.listdir(tmp_path / "cache"))


def test_file_cache_is_not_reused_for_a_rewritten_dataset(digits_job, make_job, digits_npz, tmp_path):
    out, prefix = str(tmp_path / "ds"), str(tmp_path / "cache" / "c")
    preprocess(digits_job, output_dir=out)
    first = _labels(read(out, "eval", batch_size=8, shuffle=False, cache=prefix))
    src = dict(np.load(digits_npz))
    src["y"] = (src["y"] + 1) % 10  # same sequences, every label changed
    changed = tmp_path / "changed" / os.path.basename(digits_npz)  # same name: same split by row position
    changed.parent.mkdir()
    np.savez(changed, **src)
    preprocess(make_job("digits_lstm.yaml", source={"path": str(changed)}), output_dir=out)
    second = _labels(read(out, "eval", batch_size=8, shuffle=False, cache=prefix))
    assert sorted(second) == sorted((first + 1) % 10)


def test_stages_compose_by_hand(digits_dataset):
    m = load_manifest(digits_dataset)
    ds = (readers.list_shards(m, "eval", shuffle=False)
          .apply(readers.interleave_records(compression=m.compression, cycle_length=1))
          .batch(10)
          .apply(readers.parse_records(m.schema))
          .apply(readers.pad_sequences(m.schema))
          .apply(readers.prefetch(buffer_size=1)))
    features, label = next(iter(ds))
    assert features["mfcc"].shape[0] == 10 and isinstance(features["mfcc"], tf.Tensor)


def test_no_manifest_no_read(tmp_path):
    with pytest.raises(ManifestError, match=r"no manifest.json; write the dataset with `tfstream preprocess`"):
        read(str(tmp_path), "train")


def test_unknown_split(flights_dataset):
    with pytest.raises(ManifestError, match=r"no split 'test'; the dataset has \['train', 'validation', 'eval'\]"):
        read(flights_dataset, "test")


def test_changed_or_missing_shards_are_caught(digits_dataset, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(digits_dataset, copy)
    shard = os.path.join(copy, load_manifest(copy).shards("eval")[0]["file"])
    with open(shard, "ab") as f:
        f.write(b"junk")
    with pytest.raises(ManifestError, match=r"bytes on disk but \d+ in the manifest; the shard was changed"):
        read(copy, "eval")
    os.remove(shard)
    with pytest.raises(ManifestError, match=r"listed in the manifest but missing; re-run `tfstream preprocess`"):
        read(copy, "eval")


def test_unknown_manifest_version(digits_dataset, tmp_path):
    copy = str(tmp_path / "copy")
    shutil.copytree(digits_dataset, copy)
    path = os.path.join(copy, "manifest.json")
    data = json.load(open(path))
    data["format_version"] = 99
    json.dump(data, open(path, "w"))
    with pytest.raises(ManifestError, match=r"manifest format version 99; this tfstream reads version 1"):
        read(copy, "train")


def test_unshuffled_read_keeps_the_stored_order(flights_dataset):
    m = load_manifest(flights_dataset)
    assert len(m.shards("train")) == 3
    stored = [r.numpy() for r in tf.data.TFRecordDataset(m.shard_paths("train"), compression_type="GZIP")]
    expected = [int(decode_example(r, m.schema)["late"]) for r in stored]
    for _ in range(2):
        assert _labels(read(flights_dataset, "train", batch_size=7, shuffle=False)).tolist() == expected
