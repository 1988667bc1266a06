"""Training reads one snapshot to the end: republishing during training changes nothing,
a resume on a republished dataset refuses, and a run killed after its last epoch goes
straight to evaluation (issue 10's defects 1 and 2)."""

import csv
import json
import os

import keras
import pytest

from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.write.beam_pipeline import preprocess
from tfstream.testing import flights_slice

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def flights(tmp_path_factory):
    """A flights slice, and the same rows with ``arr_delay`` negated (the labels flipped)."""
    root = tmp_path_factory.mktemp("flights")
    path = flights_slice(str(root / "flights.csv"), every=120)
    flipped = str(root / "flipped.csv")
    with open(path, newline="", encoding="utf-8") as src, open(flipped, "w", newline="", encoding="utf-8") as dst:
        rows = csv.DictReader(src)
        out = csv.DictWriter(dst, rows.fieldnames)
        out.writeheader()
        for row in rows:
            if row["arr_delay"] not in ("", "NA"):
                row["arr_delay"] = str(-float(row["arr_delay"]))
            out.writerow(row)
    return path, flipped


def _job(make_job, path, epochs=3):
    return make_job("flights_dense.yaml", source={"path": path},
                    output={"num_shards": {"train": 2, "validation": 1, "eval": 1}, "snapshot_retention_hours": 0},
                    train={"epochs": epochs, "validation_split": "validation", "eval_split": "eval",
                           "early_stopping_patience": 0},
                    reader={"batch_size": 128, "shuffle_buffer": 2000, "seed": 7})


def _train(job, dataset, model_dir, callbacks=(), **kwargs):
    from tfstream.training.trainer import train

    return train(job, dataset=dataset, model_dir=str(model_dir), verbose=0, callbacks=list(callbacks), **kwargs)


class _AtEpoch(keras.callbacks.Callback):
    """Runs ``action`` at the end (or, with ``begin``, the start) of epoch ``epoch``."""

    def __init__(self, epoch, action, begin=False):
        super().__init__()
        self.epoch, self.action, self.begin = epoch, action, begin

    def on_epoch_begin(self, epoch, logs=None):
        if self.begin and epoch == self.epoch:
            self.action()

    def on_epoch_end(self, epoch, logs=None):
        if not self.begin and epoch == self.epoch:
            self.action()


class Interrupted(Exception):
    pass


def _interrupt():
    raise Interrupted("killed")


def test_republishing_during_training_changes_nothing(flights, make_job, tmp_path):
    import tensorflow as tf

    tf.config.experimental.enable_op_determinism()
    path, flipped = flights
    job = _job(make_job, path)
    undisturbed_dir, disturbed_dir = str(tmp_path / "undisturbed"), str(tmp_path / "disturbed")
    preprocess(job, output_dir=undisturbed_dir)
    preprocess(job, output_dir=disturbed_dir)
    undisturbed = _train(job, undisturbed_dir, tmp_path / "m1")
    republished = []

    def republish():  # twice, so that the snapshot in training is neither current nor previous
        for _ in range(2):
            republished.append(preprocess(_job(make_job, flipped), output_dir=disturbed_dir))

    disturbed = _train(job, disturbed_dir, tmp_path / "m2", [_AtEpoch(0, republish)])
    assert len(republished) == 2 and load_manifest(disturbed_dir).digest != disturbed["dataset"]["digest"]
    for key in ("eval", "history", "baseline", "examples", "best_epoch"):
        assert disturbed[key] == undisturbed[key], key
    assert disturbed["dataset"]["digest"] == undisturbed["dataset"]["digest"]


def _interrupted_run(job, tmp_path) -> str:
    """A dataset, and a training run on it into tmp_path/m interrupted at the start of epoch 3."""
    dataset = str(tmp_path / "ds")
    preprocess(job, output_dir=dataset)
    with pytest.raises(Interrupted):
        _train(job, dataset, tmp_path / "m", [_AtEpoch(2, _interrupt, begin=True)])
    return dataset


def test_a_resume_on_a_republished_dataset_refuses(flights, make_job, tmp_path):
    from tfstream.training.trainer import TrainError

    path, flipped = flights
    job = _job(make_job, path)
    dataset = _interrupted_run(job, tmp_path)
    before = load_manifest(dataset)
    same = preprocess(job, output_dir=dataset)  # a rerun on the same rows: same digest, resumable
    assert same.digest == before.digest and same.snapshot["id"] != before.snapshot["id"]
    preprocess(_job(make_job, flipped), output_dir=dataset)
    with pytest.raises(TrainError, match=r"it was republished\. Resuming would mix two datasets\. Run with --restart"):
        _train(job, dataset, tmp_path / "m")
    fresh = _train(job, dataset, tmp_path / "m", restart=True)
    assert fresh["resumed_at_epoch"] is None and fresh["epochs_run"] == 3
    assert fresh["dataset"]["digest"] == load_manifest(dataset).digest


def test_an_identical_republish_resumes(flights, make_job, tmp_path):
    path, _ = flights
    job = _job(make_job, path)
    dataset = _interrupted_run(job, tmp_path)
    preprocess(job, output_dir=dataset)
    resumed = _train(job, dataset, tmp_path / "m")
    assert resumed["resumed_at_epoch"] == 3 and resumed["epochs_run"] == 3


def test_a_kill_after_the_last_epoch_goes_straight_to_evaluation(flights, make_job, tmp_path, monkeypatch):
    from tfstream.training import trainer

    path, _ = flights
    job = _job(make_job, path, epochs=2)
    dataset = str(tmp_path / "ds")
    preprocess(job, output_dir=dataset)
    real_export = trainer.export_serving

    def killed(*args, **kwargs):
        raise Interrupted("killed while exporting")

    monkeypatch.setattr(trainer, "export_serving", killed)
    with pytest.raises(Interrupted):
        _train(job, dataset, tmp_path / "m")
    monkeypatch.setattr(trainer, "export_serving", real_export)
    epochs = []
    metrics = _train(job, dataset, tmp_path / "m", [_AtEpoch(0, lambda: epochs.append(0), begin=True)])
    assert epochs == []  # no epoch ran again
    assert metrics["epochs_run"] == 2 and metrics["fit_seconds"] > 0
    with open(tmp_path / "m" / "metrics.json", encoding="utf-8") as f:
        assert json.load(f)["eval"] == metrics["eval"]
    assert not os.path.exists(tmp_path / "m" / "checkpoints" / "fitted.json")  # complete: a rerun is a new run


def test_half_written_fit_state_is_not_resumed(flights, make_job, tmp_path):
    """Final weights without fitted.json (or the reverse): a kill between the two, not a
    finished fit; the next run starts afresh instead of appending to the history."""
    from tfstream.training.trainer import _check_dataset_identity

    path, _ = flights
    dataset = str(tmp_path / "ds")
    manifest = preprocess(_job(make_job, path), output_dir=dataset)
    checkpoints = tmp_path / "m" / "checkpoints"
    checkpoints.mkdir(parents=True)
    for stray in ("last.weights.h5", "fitted.json"):
        (checkpoints / stray).write_bytes(b"half")
        assert _check_dataset_identity(str(checkpoints), manifest, dataset, restart=False) is False
        assert not (checkpoints / stray).exists()
