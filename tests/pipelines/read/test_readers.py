"""The tf.data read side: shapes, padding, determinism, and trusting only the manifest."""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tfstream.pipelines.config import ConfigError
from tfstream.pipelines.manifest import Manifest, ManifestError, load_manifest
from tfstream.pipelines.read import bucketing, stages
from tfstream.pipelines.read.reader import read
from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.transforms.codecs import parse_batch
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
    counts = m.split("eval").label.class_counts
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
    ds = (stages.list_shards(m, "eval", shuffle=False)
          .apply(stages.read_shards(compression=m.compression))
          .batch(10)
          .apply(stages.parse_and_pad(m.schema))
          .apply(stages.prefetch(buffer_size=1)))
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
    shard = os.path.join(copy, load_manifest(copy).split("eval").shards[0].file)
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
    with pytest.raises(ManifestError, match=r"manifest format version 99; this tfstream reads versions? 1"):
        read(copy, "train")


def test_unshuffled_read_keeps_the_stored_order(flights_dataset):
    m = load_manifest(flights_dataset)
    assert len(m.split("train").shards) == 3
    stored = [r.numpy() for r in tf.data.TFRecordDataset(m.shard_paths("train"), compression_type="GZIP")]
    expected = [int(decode_example(r, m.schema)["late"]) for r in stored]
    for _ in range(2):
        assert _labels(read(flights_dataset, "train", batch_size=7, shuffle=False)).tolist() == expected


# --------------------------------------------------------------------- bucketing


def _toy_manifest(histogram, *, quantiles=None):
    """A hand-made manifest: one sequence feature ``s`` (2 values per step)."""
    from tfstream.transforms.schema import Feature, Label, Schema

    schema = Schema((Feature("s", "sequence", "float32", (2,)), Feature("x", "numeric", "float32")),
                    Label("y", "regression"))
    length = {"count": sum(histogram.values()), "histogram": {str(k): v for k, v in histogram.items()}}
    if quantiles is not None:
        length["quantiles"] = quantiles
    return Manifest({"format_version": 1, "name": "toy", "compression": "none", "schema": schema.to_json(),
                     "splits": {"train": {"num_examples": length["count"], "shards": [],
                                          "statistics": {"features": {"s": {"kind": "sequence", "length": length}}}}}},
                    "<toy>")


def test_bucket_plan_from_a_hand_made_manifest():
    m = _toy_manifest({n: 10 for n in range(1, 11)})  # lengths 1..10, ten of each; no quantiles (old manifest)
    plan = bucketing.bucket_plan(m, "train", "s", max_tokens_per_batch=40, num_buckets=4)
    # the boundaries that pad least (see test_bucket_boundaries_pad_least); the last is the longest
    assert plan.boundaries == (2, 4, 7, 10)
    assert plan.batch_sizes == (20, 10, 5, 4)  # 40 // boundary
    real = 10 * sum(range(1, 11))
    padded = 10 * (2 * 2 + 2 * 4 + 3 * 7 + 3 * 10)  # each length padded to its bucket's boundary
    assert plan.padding_efficiency == pytest.approx(real / padded)
    capped = bucketing.bucket_plan(m, "train", "s", max_tokens_per_batch=40, num_buckets=4, max_batch_size=6)
    assert capped.batch_sizes == (6, 6, 5, 4) and capped.boundaries == plan.boundaries
    one = bucketing.bucket_plan(_toy_manifest({5: 7, 6: 1}), "train", "s", max_tokens_per_batch=60)
    assert one.boundaries == (5, 6) and one.batch_sizes == (12, 10)  # 8 buckets asked, 2 lengths only
    assert plan.counts == (20, 20, 30, 30) and plan.num_batches() == 1 + 2 + 6 + 8
    assert plan.num_batches(drop_remainder=True) == 1 + 2 + 6 + 7
    assert bucketing.bucket_plan(_toy_manifest({4: 3}), "train", "s", max_tokens_per_batch=8).padding_efficiency == 1.0


def test_bucket_plan_pads_less_than_equal_count_buckets(digits_dataset):
    """On real lengths (a long tail): the least-padding boundaries beat the deciles."""
    m = load_manifest(digits_dataset)
    length = m.split("train").statistics("mfcc").length
    plan = bucketing.bucket_plan(m, "train", "mfcc", max_tokens_per_batch=10_000, num_buckets=10)
    deciles = sorted(set(length.quantiles[1:]))
    hist = dict(length.histogram)
    padded = sum(v * min(b for b in deciles if b >= n) for n, v in hist.items())
    decile_efficiency = sum(n * v for n, v in hist.items()) / padded
    assert plan.padding_efficiency > decile_efficiency and plan.padding_efficiency > 0.9


def test_bucket_plan_errors(caplog):
    m = _toy_manifest({n: 10 for n in range(1, 11)})
    with pytest.raises(ValueError, match=r"feature 'x': only a sequence feature can be bucketed by length; "
                                         r"the dataset's sequence features are \['s'\]"):
        bucketing.bucket_plan(m, "train", "x", max_tokens_per_batch=40)
    with pytest.raises(ValueError, match=r"split 'train' has no 's' sequences .* nothing to bucket"):
        bucketing.bucket_plan(_toy_manifest({}), "train", "s", max_tokens_per_batch=40)
    with pytest.raises(ValueError, match=r"max_tokens_per_batch: expected >= 1, got 0"):
        bucketing.bucket_plan(m, "train", "s", max_tokens_per_batch=0)
    with pytest.raises(ValueError, match=r"num_buckets: expected >= 1, got 0"):
        bucketing.bucket_plan(m, "train", "s", max_tokens_per_batch=40, num_buckets=0)
    with pytest.raises(ManifestError, match=r"no split 'eval'"):
        bucketing.bucket_plan(m, "eval", "s", max_tokens_per_batch=40)
    with caplog.at_level("WARNING"):
        assert bucketing.bucket_plan(m, "train", "s", max_tokens_per_batch=8).batch_sizes[-1] == 1
    assert "max_tokens_per_batch=8 is less than the longest 's' sequence (10 steps)" in caplog.text


def _stored_records(m, split):
    compression = "GZIP" if m.compression == "gzip" else ""
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(m.shard_paths(split), compression_type=compression))


def _check_padded_batch(seq, lengths, allowed_steps):
    assert seq.shape[1] in allowed_steps, (seq.shape, allowed_steps)
    for row, n in zip(seq, lengths):
        assert np.all(row[n:] == 0)  # right padding
        assert np.any(row[n - 1] != 0)  # the last real step is data


@pytest.mark.parametrize("blocks", [False, True])
def test_bucket_by_length_on_serialized_records(digits_dataset, blocks):
    m = load_manifest(digits_dataset)
    plan = bucketing.bucket_plan(m, "train", "mfcc", max_tokens_per_batch=400, num_buckets=4)
    files = stages.list_shards(m, "train", shuffle=False)
    ds = files.apply(stages.interleave_blocks(block_size=50, cycle_length=2) if blocks
                     else stages.read_shards())
    batches = list(ds.apply(bucketing.bucket_by_length(plan=plan, length_key="mfcc_length")))
    assert sorted(r for b in batches for r in b.numpy()) == _stored_records(m, "train")  # every record once
    bounds = (0,) + plan.boundaries
    for serialized in batches:
        features, _ = parse_batch(serialized, m.schema)
        lengths = features["mfcc_length"].numpy()
        i = plan.boundaries.index(next(b for b in plan.boundaries if b >= lengths.max()))
        assert np.all((lengths > bounds[i]) & (lengths <= bounds[i + 1]))  # one bucket per batch
        assert len(lengths) <= plan.batch_sizes[i]
        padded = stages.parse_and_pad(m.schema, boundaries=plan.boundaries)(
            tf.data.Dataset.from_tensors(serialized))
        (features, _), = list(padded)
        _check_padded_batch(features["mfcc"].numpy(), lengths, {plan.boundaries[i]})
    assert max(len(b) for b in batches) == max(plan.batch_sizes)  # buckets fill up


def test_bucket_by_length_on_parsed_records(digits_dataset):
    m = load_manifest(digits_dataset)
    plan = bucketing.BucketPlan(boundaries=(15, 20), batch_sizes=(8, 6), padding_efficiency=0.0)
    spec = m.schema.parse_spec()

    def parse_one(s):
        parsed = tf.io.parse_single_example(s, spec)
        return parsed, parsed.pop("digit")

    records = stages.list_shards(m, "eval", shuffle=False).apply(stages.read_shards())
    parsed = records.map(parse_one)  # mfcc comes out ragged: the stage densifies it
    n = m.num_examples("eval")
    for pad_to_bucket in (True, False):
        seen = 0
        for features, label in parsed.apply(bucketing.bucket_by_length(plan=plan, length_key="mfcc_length",
                                                                     pad_to_bucket=pad_to_bucket)):
            seq, lengths = features["mfcc"].numpy(), features["mfcc_length"].numpy()
            longest = lengths.max()
            bucket = 0 if longest <= 15 else 1 if longest <= 20 else 2  # 2: longer than every boundary
            assert len(lengths) <= (8, 6, 6)[bucket] and label.shape == lengths.shape
            steps = {(15, 20, longest)[bucket]} if pad_to_bucket else {longest}
            _check_padded_batch(seq, lengths, steps)
            seen += len(lengths)
        assert seen == n


def test_bucket_by_length_drop_remainder(digits_dataset):
    m = load_manifest(digits_dataset)
    plan = bucketing.bucket_plan(m, "train", "mfcc", max_tokens_per_batch=400, num_buckets=3)
    ds = (stages.list_shards(m, "train", shuffle=False).apply(stages.read_shards())
          .apply(bucketing.bucket_by_length(plan=plan, length_key="mfcc_length", drop_remainder=True)))
    sizes = [len(b) for b in ds]
    assert set(sizes) <= set(plan.batch_sizes) and len(sizes) == plan.num_batches(drop_remainder=True)


def test_read_with_max_tokens_per_batch(digits_dataset):
    m = load_manifest(digits_dataset)
    plan = bucketing.bucket_plan(m, "train", "mfcc", max_tokens_per_batch=512, num_buckets=4, max_batch_size=24)
    counter = stages.PaddingCounter()
    ds = read(digits_dataset, "train", batch_size=24, seed=0, max_tokens_per_batch=512, num_buckets=4,
              padding_counter=counter)
    assert int(ds.cardinality()) == plan.num_batches()  # each bucket holds the same sequences every epoch
    assert sum(plan.counts) == m.num_examples("train")
    labels, real, padded = [], 0, 0
    for features, label in ds:
        seq, lengths = features["mfcc"].numpy(), features["mfcc_length"].numpy()
        i = plan.boundaries.index(seq.shape[1])  # padded to a bucket's boundary
        assert len(lengths) <= plan.batch_sizes[i] <= 24
        _check_padded_batch(seq, lengths, set(plan.boundaries))
        labels.append(label.numpy())
        real, padded = real + lengths.sum(), padded + seq.shape[0] * seq.shape[1]
    labels = np.concatenate(labels)
    assert sorted(labels) == sorted(_labels(read(digits_dataset, "train", shuffle=False)))  # every record once
    assert counter.efficiency() == real / padded == pytest.approx(plan.padding_efficiency)
    again = np.concatenate([y.numpy() for _, y in read(digits_dataset, "train", batch_size=24, seed=0,
                                                          max_tokens_per_batch=512, num_buckets=4)])
    np.testing.assert_array_equal(labels, again)  # a seed makes bucketed batches reproducible


def test_max_tokens_per_batch_without_sequences_is_ignored_with_a_warning(flights_dataset, caplog):
    with caplog.at_level("WARNING"):
        ds = read(flights_dataset, "eval", batch_size=50, shuffle=False, max_tokens_per_batch=1000)
    assert "max_tokens_per_batch=1000 is ignored: the dataset 'flights' has no sequence feature" in caplog.text
    assert next(iter(ds))[1].shape == (50,)


def test_padding_counter_counts_the_batches_made(digits_dataset):
    counter = stages.PaddingCounter()
    assert counter.efficiency() is None
    ds = read(digits_dataset, "train", batch_size=16, seed=2, padding_counter=counter)
    for epoch in range(2):
        counter.reset()
        real = padded = 0
        for features, _ in ds:
            real += int(features["mfcc_length"].numpy().sum())
            padded += int(np.prod(features["mfcc"].shape[:2]))
        assert counter.efficiency() == real / padded < 1


def test_ram_budget(digits_dataset):
    ds = read(digits_dataset, "eval", shuffle=False, memory_budget_mb=64)
    assert ds.options().autotune.ram_budget == 64 << 20
    assert read(digits_dataset, "eval", shuffle=False).options().autotune.ram_budget in (None, 0)
    with pytest.raises(ConfigError, match=r"reader.memory_budget_mb: expected >= 16 \(MiB\), got 0"):
        read(digits_dataset, "eval", memory_budget_mb=0)


def test_shuffled_batches_mix_shards_and_records(flights_dataset):
    m = load_manifest(flights_dataset)
    stored = _stored_records(m, "train")
    by_shard = {r: i for i, path in enumerate(m.shard_paths("train"))
                for r in (x.numpy() for x in tf.data.TFRecordDataset(path, compression_type="GZIP"))}
    ds = (stages.list_shards(m, "train", seed=5)
          .apply(stages.interleave_blocks(compression=m.compression, block_size=16, cycle_length=3))
          .apply(stages.shuffle_blocks(buffer_size=2000, block_size=16, seed=5))
          .rebatch(64))
    batches = [b.numpy() for b in ds]
    assert sorted(r for b in batches for r in b) == stored  # every record once
    assert all(len(b) == 64 for b in batches[:-1])
    first = batches[0]
    assert len({by_shard[r] for r in first}) > 1  # one batch holds records of several shards
    runs = sum(1 for a, b in zip(first, first[1:]) if stored.index(a) + 1 == stored.index(b))
    assert runs < 8  # not blocks in their stored order
    assert [b.numpy().tolist() for b in ds] != [b.tolist() for b in batches]  # another order the next epoch


def test_bucket_boundaries_pad_least():
    """The boundaries are the best of every possible choice (brute force on a small histogram)."""
    import itertools

    import numpy as np

    from tfstream.pipelines.read.bucketing import _least_padding_boundaries

    rng = np.random.default_rng(3)
    for _ in range(20):
        lengths = np.array(sorted(rng.choice(np.arange(1, 60), size=9, replace=False)))
        counts = rng.integers(1, 50, size=9)

        def padded(bounds):
            return sum(c * min(b for b in bounds if b >= n) for n, c in zip(lengths, counts))

        for k in (1, 2, 3, 4):
            got = _least_padding_boundaries(lengths, counts, k)
            assert len(got) <= k and got[-1] == lengths[-1]
            best = min(padded(tuple(c) + (lengths[-1],)) for r in range(k)
                       for c in itertools.combinations(lengths[:-1], r))
            assert padded(got) == best
