"""The Beam write side: transforms under TestPipeline, and the dataset a whole run writes."""

import glob
import hashlib
import json
import os
import re

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.inspect.report import format_manifest
from tfstream.pipelines.write.beam_pipeline import (
    ComputeVocabularies,
    PreprocessError,
    ReadSource,
    WriteShards,
    _ByTag,
    _Combine,
    _ConvertChunk,
    preprocess,
)
from tfstream.pipelines.write.sharding import record_hash
from tfstream.transforms.analyzers import DatasetStats
from tfstream.transforms.codecs import decode_example
from tfstream.transforms.split import Splitter


def _data_rows(path):
    with open(path, encoding="utf-8") as f:
        return sum(1 for _ in f) - 1


def test_read_source_yields_every_row(flights_csv, flights_job):
    with BeamTestPipeline() as p:
        chunks = p | ReadSource([flights_csv], flights_job.source, flights_job.source_columns(), [])
        counts = chunks | beam.Map(lambda c: len(c[2]["month"])) | beam.CombineGlobally(sum)
        assert_that(counts, equal_to([_data_rows(flights_csv)]))


def test_convert_routes_drops_and_counts(flights_job):
    columns = flights_job.source_columns()
    good = dict(zip(columns, ["1", "2", "517", "830", "2", "1400", "UA", "EWR", "IAH", "11", "2013", "1545"]))
    no_dep = dict(good, dep_delay="NA")
    no_arr = dict(good, arr_delay="NA", flight="7")
    chunk = ("f.csv", 1, {c: [good[c], no_dep[c], no_arr[c]] for c in columns})
    splitter = Splitter(dict(flights_job.split.fractions), flights_job.split.salt)
    fn = _ConvertChunk(flights_job.row_rules(), flights_job.split_plan().router(), flights_job.split.key)
    expected_split = splitter.assign([good[k] for k in flights_job.split.key])
    with BeamTestPipeline() as p:
        routed = (p | beam.Create([chunk])
                  | beam.ParDo(fn) | _ByTag(["_read", "_quarantine", *flights_job.split.fractions]))
        assert_that(routed["_read"], equal_to([3]), label="read")
        assert_that(routed["_quarantine"] | beam.FlatMap(lambda batch: batch)  # one batch per chunk
                    | beam.Map(lambda r: (r["row"], r["action"], r["reason"], r["column"],
                                                                r["message"], r["values"]["dep_delay"])),
                    equal_to([(2, "dropped", "missing", "dep_delay",
                               "f.csv: row 2: dropped by the rule for missing values in column 'dep_delay'", "NA"),
                              (3, "dropped", "missing_label", "arr_delay",
                               "f.csv: row 3: dropped by the rule for missing label values in column 'arr_delay'",
                               "2")]), label="quarantined")
        # a split gets one batch per chunk: a list of its rows
        assert_that(routed[expected_split] | beam.Map(lambda rows: [(r["carrier"], r["late"], r["sched_dep_time"])
                                                                    for r in rows]),
                    equal_to([[("UA", 0, 517)]]), label="row")


def test_stats_combine_fn_is_lifted_and_merged(flights_job):
    rows = [{"month": m, "day": 1, "sched_dep_time": 600, "sched_arr_time": 900, "dep_delay": float(m),
             "distance": 100.0, "carrier": "UA" if m % 3 else "AA", "origin": "EWR", "dest": "IAH", "late": m % 2}
            for m in range(1, 13)]
    with BeamTestPipeline() as p:
        batches = [rows[:5], rows[5:6], rows[6:]]  # its inputs are batches of rows
        stats = p | beam.Create(batches, reshuffle=True) | beam.CombineGlobally(_Combine(DatasetStats(flights_job.schema()), batches=True))
        summary = stats | beam.Map(lambda s: (s["num_examples"], s["features"]["dep_delay"]["mean"],
                                              s["features"]["dep_delay"]["quantiles"][5],
                                              s["features"]["carrier"], s["label"]["class_counts"]))
        assert_that(summary, equal_to([(12, 6.5, 6.0, {"kind": "categorical", "count": 12, "missing": 0},
                                        {"arr_delay<=15": 6, "arr_delay>15": 6})]))


def test_vocabularies_are_keyed_counts_cut_to_the_top_k():
    rows = [{"a": t, "b": "x"} for t in "ccbbbaad"]
    with BeamTestPipeline() as p:
        batches = [rows[:3], rows[3:4], rows[4:]]
        out = p | beam.Create(batches, reshuffle=True) | ComputeVocabularies({"a": 3, "b": None})
        assert_that(out, equal_to([
            ("a", {"num_unique": 4, "vocabulary": [["b", 3], ["a", 2], ["c", 2]]}),  # ties: alphabetical
            ("b", {"num_unique": 1, "vocabulary": [["x", 8]]}),
        ]))


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_write_shards_places_records_by_keyed_hash_sorted(compression, tmp_path):
    """Shard = keyed hash % shards; within a shard, sorted by hash; every shard exists."""
    from tfstream.pipelines.shards import read_records, shard_file
    from tfstream.transforms.codecs import encode_example
    from tfstream.transforms.schema import Feature, Label, Schema

    schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
    rows = [{"x": float(i), "y": 0.0} for i in range(40)]
    n = 50  # more shards than records: some stay empty
    with BeamTestPipeline() as p:
        out = (p | beam.Create([rows[:7], rows[7:8], rows[8:]], reshuffle=True)
               | WriteShards("train", schema, str(tmp_path), "ds", n, compression))
        assert_that(out | beam.Map(lambda sd: (sd[0], sd[1]["file"])),
                    equal_to([("train", shard_file("train", "ds", i, n, compression)) for i in range(n)]))

    expected = {i: [] for i in range(n)}
    for record in sorted(encode_example(r, schema) for r in rows):
        h = record_hash(record, b"ds")
        expected[h % n].append((h, record))
    for i in range(n):
        path = tmp_path / shard_file("train", "ds", i, n, compression)
        data = path.read_bytes()
        if compression == "gzip":
            import gzip

            data = gzip.decompress(data)
        import io

        assert list(read_records(io.BytesIO(data))) == [r for _, r in sorted(expected[i])], i
    assert sum(1 for i in range(n) if not expected[i]) > 0


def test_shards_are_shuffled_at_write_time(flights_dataset):
    """The source is in date order; every shard must be a random sample of the year."""
    m = load_manifest(flights_dataset)
    for path in m.shard_paths("train"):
        head = [decode_example(r.numpy(), m.schema)["month"]
                for r in tf.data.TFRecordDataset(path, compression_type="GZIP").take(200)]
        assert len(set(head)) >= 10, head


def test_manifest_is_the_contract(flights_dataset, flights_csv):
    m = load_manifest(flights_dataset)
    src = m.data["source"]
    assert src["rows_read"] == _data_rows(flights_csv)
    assert src["rows_written"] + src["rows_dropped"] + src["rows_rejected"] == src["rows_read"]
    assert src["rows_dropped"] == sum(src["dropped"].values()) > 0  # the slice has cancelled flights
    assert set(src["dropped"]) == {"missing:dep_delay", "missing_label:arr_delay"}
    assert src["rows_rejected"] == 0 and src["rejected"] == {}
    # every row not written is in the quarantine, with its file, row and reason
    (quarantine,) = src["quarantine"]
    with open(os.path.join(flights_dataset, quarantine), encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == src["rows_dropped"]
    assert {(r["action"], f"{r['reason']}:{r['column']}") for r in lines} == {("dropped", k) for k in src["dropped"]}
    assert all(r["file"] == os.path.basename(flights_csv) and r["row"] >= 1 for r in lines)
    assert sum(m.num_examples(s) for s in m.split_names) == src["rows_written"]
    assert m.split_names == ["train", "validation", "eval"]
    for split in m.split_names:
        shards = m.data["splits"][split]["shards"]
        n = len(shards)
        snapshot = f"snapshots/{m.snapshot['id']}/"
        assert [s["file"] for s in shards] == [f"{snapshot}{split}/flights-{i:05d}-of-{n:05d}.tfrecord.gz"
                                               for i in range(n)]
        assert m.data["splits"][split]["statistics"]["num_examples"] == m.num_examples(split)
        for shard, path in zip(shards, m.shard_paths(split)):
            data = open(path, "rb").read()
            assert len(data) == shard["bytes"]
            assert hashlib.sha256(data).hexdigest() == shard["sha256"]
            assert sum(1 for _ in tf.data.TFRecordDataset(path, compression_type="GZIP")) == shard["records"]
    assert len(m.data["splits"]["train"]["shards"]) == 3
    stats = m.data["splits"]["train"]["statistics"]["features"]
    assert {t for t, _ in stats["origin"]["vocabulary"]} == {"EWR", "JFK", "LGA"}
    for name in ("carrier", "origin", "dest"):
        vocab = stats[name]["vocabulary"]
        assert sum(n for _, n in vocab) == stats[name]["count"] == m.num_examples("train")
        assert stats[name]["num_unique"] == len(vocab) and stats[name]["oov_buckets"] == 1
        assert "vocabulary" not in m.data["splits"]["eval"]["statistics"]["features"][name]  # the training split's only
    for name in ("month", "day", "sched_dep_time", "sched_arr_time", "dep_delay", "distance"):
        s = stats[name]
        assert s["count"] == m.num_examples("train") and s["missing"] == 0 and s["non_finite"] == 0
        assert s["min"] == s["quantiles"][0] <= s["quantiles"][5] <= s["quantiles"][10] == s["max"]
        assert sum(s["histogram"]["counts"]) == s["count"] and len(s["histogram"]["edges"]) == 21
    assert stats["month"]["quantiles"][5] in (6.0, 7.0)
    assert m.data["options"]["config"]["name"] == "flights"
    assert len(m.data["source"]["fingerprint"]["sha256"]) == 64


def test_shards_are_readable_without_tfstream(flights_dataset):
    """Beam's own ReadFromTFRecord, and plain tf.data with the spec `tfstream inspect` prints."""
    m = load_manifest(flights_dataset)
    snapshot = os.path.join(flights_dataset, "snapshots", m.snapshot["id"])  # the published one's folder
    files = sorted(glob.glob(os.path.join(snapshot, "train", "*.tfrecord.gz")))
    assert files == m.shard_paths("train")
    with BeamTestPipeline() as p:
        count = (p | beam.io.ReadFromTFRecord(os.path.join(snapshot, "train", "*.tfrecord.gz"))
                 | beam.combiners.Count.Globally())
        assert_that(count, equal_to([m.num_examples("train")]))

    text = format_manifest(m)
    spec_text = text[text.index("parse spec"):].split("\n", 1)[1]
    spec = eval(spec_text, {"tf": tf})
    ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(512).map(lambda s: tf.io.parse_example(s, spec))
    n = 0
    for batch in ds:
        n += int(batch["late"].shape[0])
        assert set(batch) == {f.name for f in m.schema.features} | {"late"}
    assert n == m.num_examples("train")


def test_a_rerun_writes_the_same_records_in_a_new_snapshot(flights_job, make_job, tmp_path):
    out = str(tmp_path / "ds")
    first = preprocess(flights_job, output_dir=out)

    def records(manifest, split):
        return sorted(r.numpy() for r in tf.data.TFRecordDataset(manifest.shard_paths(split), compression_type="GZIP"))

    before = {split: records(first, split) for split in first.split_names}

    fewer = make_job("flights_dense.yaml", source={"path": flights_job.source.path},
                     output={"num_shards": {"train": 2, "validation": 1, "eval": 1}, "compression": "gzip"})
    second = preprocess(fewer, output_dir=out)
    for split in first.split_names:
        assert before[split] == records(second, split)
    assert second.snapshot["parent"] == first.snapshot["id"]
    left = sorted(os.listdir(os.path.join(out, "snapshots", second.snapshot["id"], "train")))
    assert left == ["flights-00000-of-00002.tfrecord.gz", "flights-00001-of-00002.tfrecord.gz"]
    for split in first.split_names:  # the previous snapshot is untouched: its readers read on
        first.shard_paths(split)
    assert second.data["drift"]["against"] == os.path.join(out, "snapshots", first.snapshot["id"], "manifest.json")


def test_sequences_round_trip_through_the_pipeline(digits_dataset, digits_npz):
    import numpy as np

    m = load_manifest(digits_dataset)
    src = np.load(digits_npz)
    assert m.data["source"]["rows_read"] == len(src["lengths"]) == m.data["source"]["rows_written"]
    stats = m.data["splits"]["train"]["statistics"]["features"]["mfcc"]
    assert stats["length"]["max"] <= int(src["lengths"].max())
    assert stats["steps"] == sum(int(k) * v for k, v in stats["length"]["histogram"].items())
    # Every stored sequence is one of the source sequences, with its label.
    offsets = np.concatenate([[0], np.cumsum(src["lengths"])])
    originals = {src["X"][offsets[i]:offsets[i + 1]].tobytes(): int(src["y"][i]) for i in range(len(src["y"]))}
    seen = 0
    for split in m.split_names:
        for path in m.shard_paths(split):
            for record in tf.data.TFRecordDataset(path):
                row = decode_example(record.numpy(), m.schema)
                assert originals[row["mfcc"].astype(np.float32).tobytes()] == row["digit"]
                assert row["mfcc_length"] == len(row["mfcc"])
                seen += 1
    assert seen == len(originals)


def test_inspect_table_lists_splits_shards_and_schema(flights_dataset):
    text = format_manifest(load_manifest(flights_dataset))
    for needle in ["splits", "shards", "schema", "train/flights-00000-of-00003.tfrecord.gz", "carrier",
                   "categorical", "label (binary)", 'tf.io.FixedLenFeature([], tf.float32)']:
        assert needle in text
    assert re.search(r"^train\s+3\s+[\d,]+", text, re.M)


def test_a_failed_run_leaves_the_previous_dataset_readable(digits_job, make_job, digits_npz, tmp_path):
    import numpy as np

    out = str(tmp_path / "ds")
    good = preprocess(digits_job, output_dir=out)
    before = {s: good.data["splits"][s]["shards"] for s in good.split_names}
    src = dict(np.load(digits_npz))
    src["y"] = src["y"].copy()
    src["y"][20] = 42  # outside the 10 declared classes
    np.savez(tmp_path / "bad.npz", **src)
    bad = make_job("digits_lstm.yaml", source={"path": str(tmp_path / "bad.npz")})
    with pytest.raises(PreprocessError, match=r"1 of 600 rows \(0.17%\) break a rule, more than "
                                              r"validation.max_bad_fraction 0\. Worst: unknown_class:y x1 \(first: "
                                              r".*bad.npz: row 21: column 'y': label 42 is outside the declared classes"):
        preprocess(bad, output_dir=out)
    refused = os.path.join(out, "rejected-run")
    (line,) = open(glob.glob(os.path.join(refused, "quarantine", "*.jsonl"))[0], encoding="utf-8").readlines()
    assert json.loads(line)["row"] == 21
    assert json.load(open(os.path.join(refused, "manifest.json")))["source"]["rows_rejected"] == 1
    after = load_manifest(out)
    assert {s: after.data["splits"][s]["shards"] for s in after.split_names} == before
    for split in after.split_names:
        after.shard_paths(split)  # every shard still there, with its size
    assert not [n for n in os.listdir(out) if n.startswith(".staging")]


def test_shard_names_of_another_dataset_are_not_ours():
    from tfstream.pipelines.shards import is_shard_of

    assert is_shard_of("flights-00000-of-00008.tfrecord.gz", "flights")
    assert is_shard_of("flights-00003-of-00008.tfrecord", "flights")
    assert not is_shard_of("flights-v2-00000-of-00001.tfrecord", "flights")
    assert not is_shard_of("flights-00000-of-00008.tfrecord.gz.tmp", "flights")


def test_multi_processing_runner_gives_the_same_dataset(digits_job, digits_dataset, tmp_path):
    """Every step is pickled to separate worker processes: what a distributed runner does."""
    m = preprocess(digits_job, output_dir=str(tmp_path / "mp"),
                   beam_args=["--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    ref = load_manifest(digits_dataset)
    for split in ref.split_names:
        assert m.num_examples(split) == ref.num_examples(split)
        assert m.data["splits"][split]["statistics"]["label"] == ref.data["splits"][split]["statistics"]["label"]
        # the same shards, byte for byte: shard assignment and order are fixed by the records
        assert [(s.file.split("/", 2)[2], s.records, s.sha256) for s in m.split(split).shards] == \
            [(s.file.split("/", 2)[2], s.records, s.sha256) for s in ref.split(split).shards]


def test_shards_merged_in_several_passes_are_the_same(flights_job, flights_dataset, tmp_path, monkeypatch):
    """Many small runs per shard (a 64 KiB CSV block: one run per shard per chunk),
    merged at most 2 at a time: the same shards, byte for byte."""
    from tfstream.pipelines.write import csv_source, sharding

    calls = []
    real = sharding.write_run
    monkeypatch.setattr(csv_source, "BLOCK_SIZE", 64 << 10)
    monkeypatch.setattr(sharding, "MAX_OPEN_RUNS", 2)
    monkeypatch.setattr(sharding, "write_run", lambda path, pairs: calls.append(path) or real(path, pairs))
    m = preprocess(flights_job, output_dir=str(tmp_path / "ds"))
    assert any("merged-" in p for p in calls)  # intermediate merges happened
    ref = load_manifest(flights_dataset)
    for split in ref.split_names:
        assert [(s.file.split("/", 2)[2], s.sha256) for s in m.split(split).shards] == \
            [(s.file.split("/", 2)[2], s.sha256) for s in ref.split(split).shards]
    assert not os.path.exists(tmp_path / "ds" / "snapshots" / m.snapshot["id"] / ".runs")
