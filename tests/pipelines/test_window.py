"""Training windows: several datasets ("spans") read as one, with statistics merged from
their manifests equal to those of one run over all their rows.

Three spans of generated rows are preprocessed each into its own dataset, and all their
rows into one more (the concatenation); ``split.key`` puts a row in the same split
either way, so the window's statistics must be the concatenation's.
"""

import copy
import json
import os
import random
import re

import numpy as np
import pytest

from tfstream.pipelines.config import config_from_dict
from tfstream.pipelines.manifest import Manifest, ManifestError, load_manifest
from tfstream.pipelines.manifest_shape import shape_problem
from tfstream.pipelines.read.reader import read
from tfstream.pipelines.snapshots import is_pinned, pins, snapshot_dir
from tfstream.pipelines.window import _common_root, window_manifest
from tfstream.pipelines.window_statistics import merge_split_statistics
from tfstream.pipelines.write.arrays import write_arrays
from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.training.trainer import train

SPLITS = ("train", "validation", "eval")
TOKENS = ["red", "green", "blue", "amber"]
NEW_TOKENS = ["violet", "teal"]  # first seen in the last span
LEFT_OUT = {"quantiles", "quantiles_rank_error", "histogram"}  # numeric figures that do not merge


def _job(path, **changes):
    job = {
        "name": "spans",
        "source": {"format": "csv", "path": path},
        "features": [
            {"name": "x", "type": "float", "on_missing": "impute", "on_nan": "impute"},
            {"name": "d", "type": "float", "on_missing": "default", "default": 0.5},
            {"name": "v", "type": "float", "columns": ["v1", "v2"], "shape": [2]},
            {"name": "k", "type": "int"},
            {"name": "c", "type": "string"},
            {"name": "c2", "type": "string", "vocab_size": 3},  # cut: the spans' vocabularies are not complete
        ],
        "label": {"column": "y", "task": "regression", "transform": "log1p"},
        "split": {"key": ["id"], "fractions": {"train": 0.7, "validation": 0.15, "eval": 0.15}},
        "output": {"num_shards": {"train": 2, "validation": 1, "eval": 1}},
        "reader": {"batch_size": 32, "shuffle_buffer": 200, "seed": 1},
        "model": {"type": "dense", "hidden_units": [8]},
        "train": {"epochs": 1, "validation_split": "validation", "eval_split": "eval"},
    }
    job.update(changes)
    return config_from_dict(job)


def _rows(span, n=300):
    rng = random.Random(span)
    rows = []
    for i in range(n):
        x = "" if i % 13 == 0 else "inf" if i % 29 == 0 else f"{rng.gauss(10 * span, 3):.3f}"
        d = "" if i % 7 == 0 else f"{rng.uniform(-1, 1):.3f}"
        c = rng.choice(TOKENS + (NEW_TOKENS if span == 3 else []))
        rows.append(f"{span * 1000 + i},{x},{d},{rng.uniform(0, 1):.4f},{rng.gauss(span, 1):.4f},"
                    f"{rng.randint(0, 50)},{c},t{rng.randint(0, 8)},{rng.expovariate(0.1):.3f}")
    return rows


def _csv(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,x,d,v1,v2,k,c,c2,y\n" + "\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tabular(tmp_path_factory):
    """``(span dataset dirs, the concatenation's dir, tmp folder)``."""
    tmp = tmp_path_factory.mktemp("window")
    spans, everything = [], []
    for span in (1, 2, 3):
        rows = _rows(span)
        everything += rows
        out = str(tmp / "datasets" / "spans" / f"span={span}")
        preprocess(_job(_csv(tmp / f"span{span}.csv", rows)), output_dir=out)
        spans.append(out)
    concat = str(tmp / "concat")
    preprocess(_job(_csv(tmp / "all.csv", everything)), output_dir=concat)
    return spans, concat, tmp


def _close(a, b, where):
    if isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for x, y in zip(a, b):
            _close(x, y, where)
    else:
        assert a == pytest.approx(b, rel=1e-6, abs=1e-9), where


def _assert_same_statistics(window, concat, where):
    """The window's statistics (raw JSON) against one run's over the same rows."""
    assert set(window) == set(concat) - LEFT_OUT, where
    for key, value in concat.items():
        if key in LEFT_OUT:
            continue
        if key in ("mean", "variance"):
            _close(window[key], value, f"{where}.{key}")
        elif key == "transformed":
            _assert_same_statistics(window[key], value, f"{where}.{key}")
        else:  # counts, min, max, vocabularies, length statistics: exactly
            assert window[key] == value, f"{where}.{key}"


def test_window_statistics_equal_the_concatenations(tabular):
    spans, concat, _ = tabular
    window, whole = window_manifest(spans), load_manifest(concat)
    assert window.split_names == whole.split_names == list(SPLITS)
    for split in SPLITS:
        w, c = window.data["splits"][split], whole.data["splits"][split]
        assert w["num_examples"] == c["num_examples"] == sum(load_manifest(s).num_examples(split) for s in spans)
        ws, cs = w["statistics"], c["statistics"]
        assert ws["num_examples"] == cs["num_examples"]
        for name in ("x", "d", "v", "k", "c"):
            _assert_same_statistics(ws["features"][name], cs["features"][name], f"{split}.{name}")
        _assert_same_statistics(ws["label"], cs["label"], f"{split}.label")
    train = window.split("train")
    x = train.statistics("x")
    assert x.missing and x.non_finite and x.impute == "mean"  # imputed values weighed out of the moments
    assert train.statistics("d").missing  # defaulted values weighed in
    c = train.statistics("c")
    assert set(c.tokens) == set(TOKENS + NEW_TOKENS) and c.num_unique == 6 and c.vocabulary_exact
    assert train.label.transformed.count == train.num_examples


def test_a_cut_vocabulary_is_marked_inexact_with_a_lower_bound(tabular):
    spans, concat, _ = tabular
    train = window_manifest(spans).split("train")
    c2, whole = train.statistics("c2"), load_manifest(concat).split("train").statistics("c2")
    assert len(c2.vocabulary) == 3 and not c2.vocabulary_exact and whole.vocabulary_exact
    assert len(c2.vocabulary) <= c2.num_unique <= whole.num_unique == 9
    assert set(c2.tokens) <= {f"t{i}" for i in range(9)}


def test_the_window_is_a_well_formed_manifest_over_the_spans_files(tabular):
    spans, _, tmp = tabular
    window = window_manifest(spans)
    assert shape_problem(window.data, written=True) is None
    assert window.root == str(tmp / "datasets" / "spans") and window.snapshot is None
    expected = [p for s in spans for p in load_manifest(s).shard_paths("train")]
    assert window.shard_paths("train") == expected  # the spans' own files, sizes checked
    assert [d["dir"] for d in window.window] == spans
    assert [d["snapshot"] for d in window.window] == [load_manifest(s).snapshot["id"] for s in spans]
    assert [d["digest"] for d in window.window] == [load_manifest(s).digest for s in spans]
    source = window.source
    assert source.rows_read == sum(load_manifest(s).source.rows_read for s in spans) == 900
    assert source.rows_written == 900
    data = json.loads(json.dumps(window.data))  # plain JSON, as a file would hold it
    assert Manifest(data, window.root).digest == window.digest == window_manifest(spans).digest


def test_the_digest_changes_when_a_span_is_republished_with_other_records(tabular):
    spans, _, tmp = tabular
    before = window_manifest(spans)
    rows = _rows(2)
    rows[5] = rows[5].rsplit(",", 1)[0] + ",123.0"  # one label changed
    again = str(tmp / "again" / "span=2")
    preprocess(_job(_csv(tmp / "span2_changed.csv", rows)), output_dir=again)
    assert window_manifest([spans[0], again, spans[2]]).digest != before.digest


def test_a_list_reads_every_record_of_every_span(tabular):
    spans, _, _ = tabular
    window = window_manifest(spans)
    n = window.num_examples("train")
    ds = read(spans, "train", batch_size=32, seed=2, raw_labels=True)
    assert int(ds.cardinality()) == -(-n // 32)
    got = np.concatenate([y.numpy() for _, y in ds])
    each = np.concatenate([y.numpy() for s in spans for _, y in read(s, "train", shuffle=False, raw_labels=True)])
    assert len(got) == n and sorted(got.tolist()) == sorted(each.tolist())
    unshuffled = np.concatenate([y.numpy() for _, y in read(window, "train", shuffle=False, raw_labels=True)])
    np.testing.assert_array_equal(unshuffled, each)  # the spans' shards, in the order given


def test_held_out_splits_are_the_named_datasets_own(tabular):
    spans, _, _ = tabular
    newest = load_manifest(spans[-1])
    window = window_manifest(spans, held_out={"eval": spans[-1]})
    assert window.data["splits"]["eval"]["statistics"] == newest.data["splits"]["eval"]["statistics"]
    assert window.num_examples("eval") == newest.num_examples("eval")
    assert window.shard_paths("eval") == newest.shard_paths("eval")
    assert window.num_examples("train") == window_manifest(spans).num_examples("train")
    with pytest.raises(ManifestError, match=r"held_out: no split 'test' in the window's datasets; they have "):
        window_manifest(spans, held_out={"test": spans[-1]})


def test_a_dataset_that_differs_is_named_with_what_differs(tabular, tmp_path):
    spans, _, _ = tabular
    other = write_arrays(_sequence_job(), _sequences(1, 20), str(tmp_path / "sequences"))
    with pytest.raises(ManifestError, match=rf"^{re.escape(other.root)}: features \['seq'\], not \['x', 'd', .*re-run "
                                            rf"`tfstream preprocess` on this dataset's source with the config"):
        window_manifest([spans[0], other.root])
    span = load_manifest(spans[1])
    gzip = Manifest({**copy.deepcopy(span.data), "compression": "gzip"}, span.root)
    expected = rf"^{re.escape(span.root)}: compression 'gzip', not 'none' \(as in {re.escape(spans[0])}\)"
    with pytest.raises(ManifestError, match=expected):
        window_manifest([spans[0], gzip])
    with pytest.raises(ManifestError, match=rf"^{re.escape(spans[0])}: listed twice in the window"):
        window_manifest([spans[0], spans[0]])
    with pytest.raises(TypeError, match=r"expected a list of datasets, got one"):
        window_manifest(spans[0])
    with pytest.raises(ManifestError, match=rf"^{re.escape(other.root)}: features"):
        read([spans[0], other.root], "train")


def test_a_pinned_window_pins_every_spans_snapshot(tabular):
    spans, _, _ = tabular
    folders = [snapshot_dir(s, load_manifest(s).snapshot["id"]) for s in spans]
    window = window_manifest(spans)
    with pins(window):
        assert all(is_pinned(f) for f in folders)
    assert not any(is_pinned(f) for f in folders)
    with pins(load_manifest(spans[0])):  # a dataset's own manifest: its one snapshot
        assert [is_pinned(f) for f in folders] == [True, False, False]


@pytest.mark.slow  # end to end: training
def test_train_on_a_window(tabular, tmp_path):
    spans, _, tmp = tabular
    window = window_manifest(spans, held_out={"eval": spans[-1]})
    metrics = train(_job(str(tmp / "span1.csv")), dataset=window, model_dir=str(tmp_path / "model"), verbose=0)
    assert metrics["examples"]["eval"] == load_manifest(spans[-1]).num_examples("eval")
    assert metrics["examples"]["train"] == window.num_examples("train")
    assert metrics["dataset"]["digest"] == window.digest
    assert [d["snapshot"] for d in metrics["dataset"]["window"]] == [d["snapshot"] for d in window.window]
    assert "train_mean" in metrics["baseline"] and "train_median" not in metrics["baseline"]  # no merged deciles


# --------------------------------------------------------------------------- sequences


def _sequence_job():
    return config_from_dict({
        "name": "seq_spans",
        "source": {"format": "npz", "path": "unused.npz", "lengths_key": "lengths"},
        "features": [{"name": "seq", "type": "sequence", "column": "X", "dim": 2, "max_length": 10}],
        "label": {"column": "y", "task": "multiclass", "num_classes": 3},
        "split": {"key": ["id"], "fractions": {"train": 0.7, "validation": 0.15, "eval": 0.15}},
        "output": {"num_shards": {"train": 2, "validation": 1, "eval": 1}},
        "model": {"type": "lstm"},
    })


def _sequences(span, n=200):
    rng = np.random.default_rng(span)
    lengths = rng.integers(2, 13 + span, size=n)  # some longer than max_length: truncated
    return {"id": np.arange(n) + 1000 * span, "lengths": lengths, "y": rng.integers(0, 3, size=n),
            "X": rng.normal(span, 1 + span, size=(int(lengths.sum()), 2))}


def test_sequence_window_statistics_equal_the_concatenations(tmp_path):
    job = _sequence_job()
    parts = [_sequences(span) for span in (1, 2, 3)]
    spans = [write_arrays(job, p, str(tmp_path / f"span={i}")) for i, p in enumerate(parts, 1)]
    whole = write_arrays(job, {key: np.concatenate([p[key] for p in parts]) for key in parts[0]},
                         str(tmp_path / "concat"))
    window = window_manifest(spans)
    for split in SPLITS:
        ws, cs = window.data["splits"][split]["statistics"], whole.data["splits"][split]["statistics"]
        assert ws["label"] == cs["label"]  # class counts
        _assert_same_statistics(ws["features"]["seq"], cs["features"]["seq"], f"{split}.seq")
    seq = window.split("train").statistics("seq")
    assert seq.truncated and seq.steps == sum(n * c for n, c in seq.length.histogram.items())
    assert seq.length.max == 10


# --------------------------------------------------------------------------- pieces


def test_merged_vocabularies_rank_as_the_writers_do():
    """Counts added, most frequent first, ties alphabetical; complete vocabularies give
    the union's size."""
    schema = {"features": [{"name": "c", "kind": "categorical", "dtype": "string", "shape": []}],
              "label": {"name": "y", "task": "binary", "classes": ["0", "1"]}}
    a = {"features": {"c": {"count": 4, "missing": 0, "num_unique": 2, "vocabulary": [["b", 3], ["a", 1]],
                            "oov_buckets": 1}}}
    b = {"features": {"c": {"count": 4, "missing": 0, "num_unique": 3, "vocabulary": [["c", 2], ["a", 1], ["z", 1]],
                            "oov_buckets": 2}}}
    c = merge_split_statistics([a, b], schema)["features"]["c"]
    assert c == {"kind": "categorical", "count": 8, "missing": 0, "num_unique": 4,
                 "vocabulary": [["b", 3], ["a", 2], ["c", 2], ["z", 1]], "oov_buckets": 2}
    cut = merge_split_statistics([a, b], schema, {"c": {"vocab_size": 2}})["features"]["c"]
    assert cut["vocabulary"] == [["b", 3], ["a", 2]] and cut["num_unique"] == 4 and "vocabulary_exact" not in cut


def test_vector_components_never_seen_stay_null():
    schema = {"features": [{"name": "v", "kind": "numeric", "dtype": "float32", "shape": [2]}],
              "label": {"name": "y", "task": "regression"}}
    a = {"features": {"v": {"count": 2, "missing": 0, "mean": [1.0, None], "variance": [1.0, None],
                            "min": [0.0, None], "max": [2.0, None]}}, "label": {"count": 0}}
    b = {"features": {"v": {"count": 2, "missing": 0, "mean": [3.0, None], "variance": [1.0, None],
                            "min": [2.0, None], "max": [4.0, None]}}, "label": {"count": 0}}
    v = merge_split_statistics([a, b], schema)["features"]["v"]
    assert (v["mean"], v["variance"], v["min"], v["max"]) == ([2.0, None], [2.0, None], [0.0, None], [4.0, None])


def test_the_common_root_of_remote_datasets():
    root, prefixes = _common_root(["gs://b/datasets/x/span=1", "gs://b/datasets/x/span=2"])
    assert root == "gs://b/datasets/x" and prefixes["gs://b/datasets/x/span=2"] == "span=2"
    for roots in (["gs://a/x", "gs://b/x"], ["gs://a/x", "/local/x"], ["gs://a/x", "s3://a/x"]):
        with pytest.raises(ManifestError, match="all local, or all in one bucket"):
            _common_root(roots)
    assert _common_root([os.sep + "d"])[1] == {os.sep + "d": "."}


def test_a_malformed_window_block_is_named_by_its_key():
    schema = {"features": [], "label": {"name": "y", "task": "regression"}}
    problem = shape_problem({"schema": schema, "splits": {}, "window": {"datasets": [{"dir": 3, "digest": "ab"}]}},
                            written=False)
    assert problem == "window.datasets[0].dir: expected a string, got an integer: 3"
    problem = shape_problem({"schema": schema, "splits": {"train": {"statistics": {"features": {
        "c": {"vocabulary_exact": "no"}}}}}}, written=False)
    assert problem == "splits.train.statistics.features.c.vocabulary_exact: expected true or false, got a string: 'no'"
