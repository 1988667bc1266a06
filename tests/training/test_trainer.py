"""End to end on small real slices: preprocess → stream → fit → evaluate → export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfstream.training  # noqa: F401 - registers LengthMask for loading .keras files
from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.readers import read
from tfstream.training.export import load_serving
from tfstream.training.trainer import TrainError, train
from tfstream.transforms.codecs import decode_example


@pytest.fixture(scope="module")
def flights_run(flights_job, flights_dataset, tmp_path_factory):
    import dataclasses

    job = dataclasses.replace(flights_job, train=dataclasses.replace(flights_job.train, epochs=4))
    model_dir = str(tmp_path_factory.mktemp("flights_model"))
    return job, train(job, dataset_dir=flights_dataset, model_dir=model_dir, verbose=0)


def test_dense_beats_the_majority_class(flights_run):
    _, metrics = flights_run
    base = metrics["baseline"]
    assert base["name"] == "majority_class" and 0.6 < base["accuracy"] < 0.9
    assert metrics["eval"]["accuracy"] > base["accuracy"] + 0.05
    assert metrics["beats_baseline"] is True


def test_outputs_on_disk(flights_run):
    _, metrics = flights_run
    d = metrics["model_dir"]
    for name in ("model.keras", "metrics.json", "history.csv", "export/saved_model.pb",
                 "checkpoints/best.weights.h5"):
        assert os.path.exists(os.path.join(d, name)), name
    on_disk = json.load(open(os.path.join(d, "metrics.json")))
    assert on_disk["eval"] == metrics["eval"]
    assert 1 <= on_disk["epochs_run"] <= 4 and 1 <= on_disk["best_epoch"] <= on_disk["epochs_run"]
    assert not os.path.exists(os.path.join(d, "checkpoints", "backup"))  # removed after a finished run


def test_export_serves_raw_features_like_the_training_path(flights_run, flights_dataset):
    """Raw values (strings, raw numbers) into the export give what the model gives on the
    training-time input pipeline: the preprocessing is inside the model."""
    _, metrics = flights_run
    m = load_manifest(flights_dataset)
    records = [r.numpy() for r in tf.data.TFRecordDataset(m.shard_paths("eval"), compression_type="GZIP").take(32)]
    rows = [decode_example(r, m.schema) for r in records]
    raw = {f.name: np.array([row[f.name] for row in rows]) for f in m.schema.features}
    assert raw["carrier"].dtype.kind == "U" and raw["month"].dtype == np.int64

    served = load_serving(metrics["export_dir"])(raw)
    model = keras.models.load_model(os.path.join(metrics["model_dir"], "model.keras"))
    features, _ = next(iter(read(flights_dataset, "eval", batch_size=32, shuffle=False)))
    first = [r for r in tf.data.TFRecordDataset(m.shard_paths("eval"), compression_type="GZIP").take(32)]
    assert [r.numpy() for r in first] == records  # same 32 records, same order
    np.testing.assert_allclose(served, model.predict(features, verbose=0), rtol=1e-5, atol=1e-6)
    assert served.shape == (32, 1) and np.all((served >= 0) & (served <= 1))

    one = {k: v[:1] for k, v in raw.items()}
    one["carrier"] = np.array(["ZZ"])  # an unseen carrier goes to the out-of-vocabulary bucket
    assert load_serving(metrics["export_dir"])(one).shape == (1, 1)
    with pytest.raises(KeyError, match=r"missing raw feature\(s\) \['dest'\]"):
        load_serving(metrics["export_dir"])({k: v for k, v in raw.items() if k != "dest"})


def test_lstm_learns_the_digits(digits_job, digits_dataset, tmp_path):
    import dataclasses

    job = dataclasses.replace(digits_job, train=dataclasses.replace(digits_job.train, epochs=12))
    metrics = train(job, dataset_dir=digits_dataset, model_dir=str(tmp_path / "model"), verbose=0)
    assert metrics["baseline"]["accuracy"] < 0.25
    assert metrics["eval"]["accuracy"] > 0.6  # 480 training sequences only; the full set reaches >= 0.95
    served = load_serving(metrics["export_dir"])
    features, _ = next(iter(read(digits_dataset, "eval", batch_size=8, shuffle=False)))
    probs = served({k: v.numpy() for k, v in features.items()})
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_schema_mismatch_is_refused(digits_job, flights_dataset, tmp_path):
    with pytest.raises(TrainError, match=r"the dataset.s schema differs from the config's; re-run `tfstream preprocess`"):
        train(digits_job, dataset_dir=flights_dataset, model_dir=str(tmp_path / "m"), verbose=0)


def test_an_empty_split_is_refused(make_job, digits_npz, tmp_path):
    import numpy as np

    from tfstream.pipelines.beam_preprocess import preprocess

    src = dict(np.load(digits_npz))
    keep = 3  # three sequences: with these fractions the validation split gets none
    n_steps = int(src["lengths"][:keep].sum())
    np.savez(tmp_path / "tiny.npz", X=src["X"][:n_steps], lengths=src["lengths"][:keep], y=src["y"][:keep])
    job = make_job("digits_lstm.yaml", source={"path": str(tmp_path / "tiny.npz")},
                   split={"fractions": {"train": 0.98, "validation": 0.01, "eval": 0.01}})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert m.num_examples("validation") == 0 and len(m.shards("validation")) == 1
    assert len(m.shards("train")) == 4 > m.num_examples("train")  # more shards than records: some empty
    assert sum(s["records"] for s in m.shards("train")) == m.num_examples("train")
    with pytest.raises(TrainError, match=r"the .validation. split is empty, nothing to validate on; give it a larger"):
        train(job, dataset_dir=str(tmp_path / "ds"), model_dir=str(tmp_path / "m"), verbose=0)


def test_an_interrupted_run_resumes_after_its_last_epoch(digits_job, digits_dataset, tmp_path):
    import dataclasses

    job = dataclasses.replace(digits_job, train=dataclasses.replace(digits_job.train, epochs=4))
    model_dir = str(tmp_path / "model")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError, match="the machine went away"):
        train(job, dataset_dir=digits_dataset, model_dir=model_dir, verbose=0, callbacks=[Crash()])
    assert os.path.isdir(os.path.join(model_dir, "checkpoints", "backup"))

    metrics = train(job, dataset_dir=digits_dataset, model_dir=model_dir, verbose=0)
    assert metrics["resumed_at_epoch"] == 3  # epochs 1 and 2 were done before the crash
    assert metrics["epochs_run"] == 4 and len(metrics["history"]["loss"]) == 4
    val = metrics["history"]["val_loss"]
    assert metrics["best_epoch"] == val.index(min(val)) + 1
    assert not os.path.exists(os.path.join(model_dir, "checkpoints", "backup"))


def test_without_a_validation_split(digits_job, digits_dataset, tmp_path):
    import dataclasses

    job = dataclasses.replace(digits_job, train=dataclasses.replace(digits_job.train, epochs=2, validation_split=None))
    metrics = train(job, dataset_dir=digits_dataset, model_dir=str(tmp_path / "m"), verbose=0)
    assert metrics["epochs_run"] == 2
    assert "val_loss" not in metrics["history"] and len(metrics["history"]["loss"]) == 2
    assert 1 <= metrics["best_epoch"] <= 2  # chosen on the training loss
