"""``train.strategy: multi_worker``: two processes on 127.0.0.1 train one Dense model
with Keras' DataParallel on JAX (`training.multi_worker`)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tfstream.training.multi_worker import MultiWorkerError, settings_from_env, use_jax_backend

# Each process: train() with a callback that saves its final weights, and the training
# split's record ids (feature x's first value: the row's number) noted as they are fed,
# per iterator: Keras takes a batch from an iterator of its own to build the model, then
# makes the epoch's.
DRIVER = r"""
import json, os, sys
import numpy as np
import tensorflow as tf
import keras
from tfstream.pipelines.config import config_from_dict
from tfstream.testing import job_dict
import tfstream.training.trainer as trainer

dataset, model_dir, out = sys.argv[1:4]
config = config_from_dict(job_dict("seed_dense.yaml", reader={"batch_size": 16, "shuffle_buffer": 64},
                                   train={"epochs": 1, "strategy": "multi_worker", "validation_split": "validation"},
                                   **json.loads(sys.argv[4])))
seen = {}  # an iterator's number -> the ids of each batch it gave
iterators = iter(range(1000))
datasets = trainer._datasets

def counted(*args, **kwargs):
    train_ds, val_ds, eval_ds, counter = datasets(*args, **kwargs)

    def tagged(number):  # each iterator of the training set gets a number (Keras peeks with one of its own)
        def note(features, label):
            x = tf.numpy_function(lambda n, v: (seen.setdefault(int(n), []).append(v[:, 0].tolist()), v)[1],
                                  [number, features["x"]], tf.float32, stateful=True)
            return dict(features, x=tf.ensure_shape(x, features["x"].shape)), label

        return train_ds.map(note)

    numbers = tf.data.Dataset.range(1).map(
        lambda _: tf.numpy_function(lambda: np.int64(next(iterators)), [], tf.int64, stateful=True))
    steps = tf.data.experimental.assert_cardinality(train_ds.cardinality())
    return numbers.flat_map(tagged).apply(steps), val_ds, eval_ds, counter

trainer._datasets = counted

class Dump(keras.callbacks.Callback):
    def on_train_end(self, logs=None):
        np.savez(out + ".npz", *self.model.get_weights())

metrics = trainer.train(config, dataset=dataset, model_dir=model_dir, verbose=0, callbacks=[Dump()])
with open(out + ".json", "w") as f:
    json.dump({"ids": seen[max(seen)], "metrics": metrics}, f)  # the last iterator's: the epoch's
"""


# One training shard for two processes: read by record (each keeps every other record).
SPLITS = {"split": {"fractions": {"train": 0.7, "validation": 0.15, "eval": 0.15}},
          "output": {"num_shards": {"train": 1, "validation": 1, "eval": 1}}}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def numeric_dataset(tmp_path_factory):
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write.arrays import write_arrays
    from tfstream.testing import job_dict

    config = config_from_dict(job_dict("seed_dense.yaml", **SPLITS))
    rng = np.random.default_rng(0)
    x = rng.random((404, 10), dtype=np.float32)
    x[:, 0] = np.arange(404)  # the row's number: a record's id
    path = str(tmp_path_factory.mktemp("numeric") / "dataset")
    manifest = write_arrays(config, {"X": x, "y": rng.integers(0, 2, 404)}, path)
    assert manifest.num_examples("train") == 278  # two processes take every record (139 each: a last batch of 3)
    return path


@pytest.mark.slow
def test_two_processes_train_one_model(numeric_dataset, tmp_path):
    pytest.importorskip("jax", reason="multi_worker runs on JAX: pip install 'tfstream[jax]'")
    from tfstream.pipelines.manifest import load_manifest

    model_dir = tmp_path / "model"
    port = _free_port()
    procs, logs = [], []
    for i in range(2):
        scratch = tmp_path / f"tmp{i}"
        scratch.mkdir()
        env = dict(os.environ, KERAS_BACKEND="jax", TFSTREAM_COORDINATOR=f"127.0.0.1:{port}",
                   TFSTREAM_NUM_PROCESSES="2", TFSTREAM_PROCESS_ID=str(i), TMPDIR=str(scratch))
        log = open(tmp_path / f"process{i}.log", "w+")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, "-c", DRIVER, numeric_dataset, str(model_dir),
                                       str(tmp_path / f"out{i}"), json.dumps(SPLITS)], env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        for p in procs:
            p.wait(timeout=240)  # a hang (a collective waiting forever) fails, never blocks
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, log) in enumerate(zip(procs, logs)):
        log.seek(0)
        assert p.returncode == 0, f"process {i}:\n{log.read()[-4000:]}"
    out = [json.load(open(tmp_path / f"out{i}.json")) for i in range(2)]
    weights = [np.load(tmp_path / f"out{i}.npz") for i in range(2)]

    # Both end with the same weights, and process 0's model.keras holds them (one epoch:
    # the best epoch is the last).
    import keras
    import tfstream.training.models  # noqa: F401 - registers the custom layers

    assert len(weights[0].files) == len(weights[1].files) > 0
    assert all(np.array_equal(weights[0][k], weights[1][k]) for k in weights[0].files)
    model = keras.models.load_model(model_dir / "model.keras")
    assert all(np.array_equal(w, weights[1][f"arr_{j}"]) for j, w in enumerate(model.get_weights()))

    # The validation figures are the whole validation split's, as one process scores it.
    from tfstream.pipelines.read.reader import read

    alone = model.evaluate(read(numeric_dataset, "validation", batch_size=16, shuffle=False), return_dict=True,
                           verbose=0)
    assert out[0]["metrics"]["history"]["val_loss"][0] == pytest.approx(alone["loss"], rel=1e-5)

    # The epoch fed every training record once, half to each process, in batches of 8.
    manifest = load_manifest(numeric_dataset)
    n = manifest.num_examples("train")
    fed = [[i for batch in o["ids"] for i in batch] for o in out]
    assert len(fed[0]) == len(fed[1]) == n // 2
    assert {len(b) for o in out for b in o["ids"][:-1]} == {8}
    assert sorted(fed[0] + fed[1]) == sorted(set(fed[0]) | set(fed[1])) and len(set(fed[0] + fed[1])) == n

    # Only process 0 wrote: the model dir is its, process 1 left nothing in its scratch.
    metrics = out[0]["metrics"]
    assert metrics["epochs_run"] == 1 and metrics["eval"]["accuracy"] is not None
    assert metrics["multi_worker"] == {"processes": 2, "batch_size": 16, "batch_size_per_process": 8,
                                       "train_split_by": "record", "records_per_process": 139,
                                       "records_per_epoch": 278, "left_out": 0}
    assert out[1]["metrics"] == {"process_index": 1, "num_processes": 2, "epochs_run": 1}
    assert json.load(open(model_dir / "metrics.json"))["eval"] == metrics["eval"]
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "export", "history.csv", "learning_curves.png", "logs",
                                             "metrics.json", "model.keras"]
    assert not [name for name in os.listdir(tmp_path / "tmp1") if name.startswith("tfstream")]


def test_a_missing_variable_is_named(tmp_path):
    with pytest.raises(MultiWorkerError) as e:
        settings_from_env({"TFSTREAM_COORDINATOR": "127.0.0.1:1234", "TFSTREAM_NUM_PROCESSES": "2"})
    assert str(e.value) == (
        "train.strategy: multi_worker needs TFSTREAM_PROCESS_ID (or TFSTREAM_PROCESS_ID_FROM naming the variable "
        "that holds it), which is not set: every process of the job must be told the coordinator's host:port, the "
        "number of processes and its own index; e.g. TFSTREAM_COORDINATOR=10.0.0.1:12345 TFSTREAM_NUM_PROCESSES=2 "
        "TFSTREAM_PROCESS_ID=0 tfstream train ... on the first process and TFSTREAM_PROCESS_ID=1 on the second; or "
        "name a launcher's variable: TFSTREAM_PROCESS_ID_FROM=SLURM_PROCID, TFSTREAM_NUM_PROCESSES_FROM=SLURM_NTASKS "
        "(README: Scaling out)")


@pytest.mark.parametrize("environ, message", [
    ({"TFSTREAM_COORDINATOR": "10.0.0.1", "TFSTREAM_NUM_PROCESSES": "2", "TFSTREAM_PROCESS_ID": "0"},
     "TFSTREAM_COORDINATOR='10.0.0.1': expected host:port of process 0"),
    ({"TFSTREAM_COORDINATOR": "h:1", "TFSTREAM_NUM_PROCESSES": "two", "TFSTREAM_PROCESS_ID": "0"},
     "TFSTREAM_NUM_PROCESSES='two': expected a whole number"),
    ({"TFSTREAM_COORDINATOR": "h:1", "TFSTREAM_NUM_PROCESSES": "2", "TFSTREAM_PROCESS_ID": "2"},
     "TFSTREAM_PROCESS_ID=2 with TFSTREAM_NUM_PROCESSES=2: the index must be 0..1"),
    ({"TFSTREAM_COORDINATOR": "h:1", "TFSTREAM_NUM_PROCESSES": "2", "TFSTREAM_PROCESS_ID_FROM": "SLURM_PROCID"},
     "TFSTREAM_PROCESS_ID_FROM=SLURM_PROCID, but SLURM_PROCID is not set"),
])
def test_invalid_settings_are_named(environ, message):
    with pytest.raises(MultiWorkerError, match=message.replace("(", r"\(").replace(".", r"\.")):
        settings_from_env(environ)


def test_a_launchers_variables_are_read():
    environ = {"TFSTREAM_COORDINATOR": "node-0:9000", "SLURM_PROCID": "3", "SLURM_NTASKS": "4",
               "TFSTREAM_PROCESS_ID_FROM": "SLURM_PROCID", "TFSTREAM_NUM_PROCESSES_FROM": "SLURM_NTASKS"}
    s = settings_from_env(environ)
    assert (s.coordinator, s.num_processes, s.process_id) == ("node-0:9000", 4, 3)
    assert settings_from_env(dict(environ, TFSTREAM_PROCESS_ID="1")).process_id == 1  # set directly: it wins


def test_the_backend_is_jax():
    import keras

    environ = {}
    if keras.backend.backend() == "jax":
        use_jax_backend(environ)
    else:  # this process imported Keras with another backend: too late to choose
        with pytest.raises(MultiWorkerError, match="but Keras was imported with the tensorflow backend: set "
                                                   "KERAS_BACKEND=jax before"):
            use_jax_backend(environ)
    assert environ == {"KERAS_BACKEND": "jax"}  # unset: tfstream selects jax
    with pytest.raises(MultiWorkerError, match="runs on Keras' JAX backend, but KERAS_BACKEND=torch: unset it"):
        use_jax_backend({"KERAS_BACKEND": "torch"})


def test_the_cli_refuses_a_process_not_told_its_place(tmp_path):
    import yaml

    from tfstream.testing import job_dict

    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job_dict("seed_dense.yaml", train={"strategy": "multi_worker"})))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TFSTREAM_", "KERAS_BACKEND"))}
    done = subprocess.run([sys.executable, "-m", "tfstream.cli", "train", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "train.strategy: multi_worker needs TFSTREAM_COORDINATOR" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("command", ["run", "retrain"])
def test_run_and_retrain_are_refused(tmp_path, command, capsys):
    import yaml

    from tfstream.cli import main
    from tfstream.testing import job_dict

    config = tmp_path / "job.yaml"
    config.write_text(yaml.safe_dump(job_dict("flights_retrain.yaml", train={"strategy": "multi_worker"})))
    assert main([command, "--config", str(config)]) == 2
    assert f"`{command}` would run in every process: write the dataset once" in capsys.readouterr().err
