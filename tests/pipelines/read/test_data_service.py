"""Reading through a tf.data service (``reader.service``): a dispatcher and two workers
on 127.0.0.1, each record counted per epoch by a unique id, in both processing modes;
Keras fit over several epochs; `train` through the service; the CLI's servers as
subprocesses; and the config errors."""

import collections
import os
import re
import signal
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfstream.pipelines.config import ConfigError, ReadOptions
from tfstream.pipelines.read.memory import estimate_input_memory
from tfstream.pipelines.read.reader import read

N = 600  # records written; the train split holds about 80 % of them
BATCH = 32


# A dispatcher and two workers, by TensorFlow's API, in a process of their own: a worker's
# stop waits, seconds to minutes, for the jobs its readers left open (Keras keeps its last
# epoch's iterator), so the servers are killed at the end rather than stopped.
_SERVERS = """
import sys
import tensorflow as tf
svc = tf.data.experimental.service
dispatcher = svc.DispatchServer(svc.DispatcherConfig(port=0))
workers = [svc.WorkerServer(svc.WorkerConfig(dispatcher_address=dispatcher._address,
                                             worker_address="127.0.0.1:%port%")) for _ in range(2)]
print(dispatcher.target, flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def service():
    """A dispatcher and two workers on loopback; their address."""
    proc = subprocess.Popen([sys.executable, "-c", _SERVERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    try:
        target = proc.stdout.readline().strip()
        assert target.startswith("grpc://"), proc.poll()
        yield target
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def id_dataset(tmp_path_factory):
    """A Dense dataset whose records carry a unique ``rid`` (0..N-1); 4 training shards."""
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.write.arrays import write_arrays
    from tfstream.testing import job_dict

    job = config_from_dict(job_dict("seed_dense.yaml", features=[
        {"name": "x", "type": "float", "column": "X", "shape": [10]}, {"name": "rid", "type": "int"}],
        output={"num_shards": {"train": 4, "eval": 1}}, reader={"batch_size": BATCH, "seed": 3},
        train={"epochs": 2, "eval_split": "eval"}))
    rng = np.random.default_rng(0)
    x = rng.random((N, 10), dtype=np.float32)
    y = (x[:, :5].sum(axis=1) > 2.5).astype(np.int64)  # learnable: a Dense model must beat the prior
    out = str(tmp_path_factory.mktemp("ids") / "ds")
    manifest = write_arrays(job, {"X": x, "rid": np.arange(N), "y": y}, out)
    return job, manifest, out


def _ids(ds) -> collections.Counter:
    return collections.Counter(int(i) for features, _ in ds for i in features["rid"].numpy())


def _train_ids(manifest) -> collections.Counter:
    return _ids(read(manifest, "train", batch_size=256, shuffle=False))


def _options(job, target, mode, **service):
    return job.reader.with_overrides(service={"dispatcher": target, "processing_mode": mode, **service})


@pytest.mark.slow
@pytest.mark.parametrize("seed", [3, None])
def test_each_record_once_per_epoch_in_distributed_epoch(id_dataset, service, seed):
    job, manifest, _ = id_dataset
    want = _train_ids(manifest)
    n = sum(want.values())
    assert set(want.values()) == {1} and 400 < n < N
    ds = read(manifest, "train", _options(job, service, "distributed_epoch").with_overrides(seed=seed))
    assert int(ds.cardinality()) == -(-n // BATCH)  # rebatched here: the split's batch count, for Keras
    for _ in range(2):
        batches = [int(label.shape[0]) for _, label in ds]
        assert sum(batches) == n and len(batches) == -(-n // BATCH)
        assert _ids(ds) == want  # each record once, every epoch


@pytest.mark.slow
def test_each_record_twice_per_epoch_with_two_workers_in_parallel_epochs(id_dataset, service):
    job, manifest, _ = id_dataset
    want = _train_ids(manifest)
    ds = read(manifest, "train", _options(job, service, "parallel_epochs"))
    assert int(ds.cardinality()) == tf.data.UNKNOWN_CARDINALITY  # workers x the split: not known here
    for _ in range(2):
        assert _ids(ds) == collections.Counter({i: 2 for i in want})


@pytest.mark.slow
def test_sequence_batches_are_padded_on_the_workers_and_batched_again_here(service, tmp_path):
    """Bucketed, padded batches are made on the workers, then split and batched again
    here by the same plan: every epoch has the in-process read's batches (sizes and
    padded lengths), its count is declared to Keras, and the padding counter, this
    process's variables, counts what the model is fed."""
    from benchmarks.long_signals import job, sines, splits
    from tfstream.pipelines.config import config_from_dict
    from tfstream.pipelines.read.stages import PaddingCounter
    from tfstream.pipelines.write.arrays import write_arrays

    seqs, y = sines(120, seed=1, classes=3, steps=(5, 60))
    config = config_from_dict(job("seqs", 1, 3, {"type": "lstm"}))
    split = splits(len(seqs), seed=1)
    manifest = write_arrays(config, {"X": np.concatenate(seqs), "lengths": np.array([len(s) for s in seqs]), "y": y,
                                     "split": split}, str(tmp_path / "ds"))
    n = int((split == "train").sum())
    local, remote = PaddingCounter(), PaddingCounter()
    options = config.reader.with_overrides(cache="none", max_tokens_per_batch=300, num_buckets=3, batch_size=16)
    plain = [(f["signal_length"].numpy(), f["signal"].shape[1])
             for f, _ in read(manifest, "train", options, padding_counter=local)]
    ds = read(manifest, "train", options.with_overrides(service={"dispatcher": service}), padding_counter=remote)
    assert int(ds.cardinality()) == len(plain) > 3  # the plan's batch count, declared for Keras
    shapes = sorted((len(lengths), steps) for lengths, steps in plain)
    for _ in range(2):
        remote.reset()
        batches = [(f["signal_length"].numpy(), f["signal"].shape[1]) for f, _ in ds]
        assert sorted((len(lengths), steps) for lengths, steps in batches) == shapes
        assert sum(len(lengths) for lengths, _ in batches) == n  # each sequence once
        assert all(steps >= lengths.max() for lengths, steps in batches)
        assert int(remote.real.numpy()) == int(sum(lengths.sum() for lengths, _ in batches)) == \
            int(sum(lengths.sum() for lengths, _ in plain))
        assert int(remote.padded.numpy()) == sum(len(lengths) * steps for lengths, steps in batches) == \
            int(local.padded.numpy())


class _Seen(keras.layers.Layer):
    """Counts the ids of the records a model is fed (a non-trainable variable)."""

    def build(self, input_shape):
        self.counts = self.add_weight(shape=(N,), initializer="zeros", dtype="int64", trainable=False)

    def call(self, rid):
        self.counts.assign_add(tf.math.bincount(tf.cast(rid, tf.int32), minlength=N, maxlength=N, dtype=tf.int64))
        return tf.cast(rid, "float32")[:, None] * 0.0


@pytest.mark.slow
@pytest.mark.parametrize("mode,job_name,copies", [("distributed_epoch", None, 1), ("distributed_epoch", "shared", 1),
                                                  ("parallel_epochs", None, 2)])
def test_keras_fit_sees_each_epochs_records(id_dataset, service, mode, job_name, copies):
    """Keras 3 fit re-iterates the dataset each epoch; each epoch is a new service job
    (also with a job_name, when the job's one reader has read it to the end)."""
    job, manifest, _ = id_dataset
    want = _train_ids(manifest)
    extra = {"job_name": f"{job_name}-{mode}"} if job_name else {}
    ds = read(manifest, "train", _options(job, service, mode, **extra))
    x = keras.Input((10,), name="x")
    rid = keras.Input((), name="rid", dtype="int64")
    seen = _Seen()
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.Concatenate()([x, seen(rid)]))
    model = keras.Model({"x": x, "rid": rid}, out)
    model.compile("adam", "binary_crossentropy")
    per_epoch = []

    class Check(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.counts.assign(tf.zeros(N, tf.int64))

        def on_epoch_end(self, epoch, logs=None):
            per_epoch.append(collections.Counter({i: int(c) for i, c in enumerate(seen.counts.numpy()) if c}))

    model.fit(ds.map(lambda f, y: ({"x": f["x"], "rid": f["rid"]}, y)), epochs=3, callbacks=[Check()], verbose=0)
    assert per_epoch == [collections.Counter({i: copies for i in want})] * 3


@pytest.mark.slow
def test_train_through_the_service(id_dataset, service, tmp_path):
    from tfstream.pipelines.config_types import replace
    from tfstream.training.trainer import train

    job, manifest, out = id_dataset
    job = replace(job, reader=_options(job, service, "distributed_epoch"))
    metrics = train(job, dataset=out, model_dir=str(tmp_path / "model"), verbose=0)
    assert os.path.exists(tmp_path / "model" / "metrics.json") and metrics["epochs_run"] == 2
    assert np.isfinite(metrics["history"]["loss"]).all() and metrics["history"]["loss"][-1] < 0.75
    assert metrics["eval"]["log_loss"] < 0.75  # the eval split is read here, in order, and scored
    # The trainer holds only the batches it receives: the workers' shuffle buffer is not counted.
    assert metrics["input_memory_mib"]["expected"] < estimate_input_memory(manifest, "train", job.reader.with_overrides(
        service=None)).expected / 2**20


def test_memory_estimate_counts_only_the_trainers_part(id_dataset):
    job, manifest, _ = id_dataset
    local = estimate_input_memory(manifest, "train", job.reader)
    remote = estimate_input_memory(manifest, "train", _options(job, "grpc://localhost:5050", "distributed_epoch"))
    assert {p.name for p in local.parts} >= {"shuffle buffer", "read buffers"}
    assert [p.name for p in remote.parts] == ["batches received", "prefetch"]
    assert remote.expected < local.expected


def test_evaluation_reads_never_go_through_the_service():
    options = ReadOptions(service={"dispatcher": "grpc://localhost:5050"})
    assert options.service.processing_mode == "distributed_epoch" and options.service.job_name is None
    assert options.for_evaluation().service is None


@pytest.mark.parametrize("service,message", [
    ({"dispatcher": "localhost:5050"},
     "reader.service.dispatcher: expected grpc://HOST:PORT (the address `tfstream data-service dispatcher` prints, "
     "e.g. grpc://trainer-1:5050), got 'localhost:5050'; write the host and the port after grpc://"),
    ({"dispatcher": "grpc://host:99999"}, "reader.service.dispatcher: expected grpc://HOST:PORT"),
    ({"dispatcher": "grpc://host:5050", "job_name": "a b"},
     "reader.service.job_name: expected 1..128 letters, digits, '.', '_' or '-', got 'a b'; rename it"),
    ({"dispatcher": "grpc://host:5050", "processing_mode": "parallel"}, "reader.service.processing_mode: "),
    ({}, "reader.service.dispatcher: "),
    ({"dispatcher": "grpc://host:5050", "mode": "x"}, "reader.service.mode: "),
])
def test_config_errors_name_the_key_and_the_fix(make_job, service, message):
    with pytest.raises(ConfigError) as e:
        make_job("seed_dense.yaml", reader={"service": service})
    assert str(e.value).startswith(message), str(e.value)


def test_a_cache_is_refused_with_a_service(make_job):
    with pytest.raises(ConfigError, match=r"^reader.cache: 'memory' cannot be used with reader.service: each worker "
                                          r"would cache only the shards it read .* set reader.cache to none"):
        make_job("seed_dense.yaml", reader={"cache": "memory", "service": {"dispatcher": "grpc://h:1"}})


def test_a_bad_processing_mode_lists_the_modes(make_job):
    with pytest.raises(ConfigError, match="distributed_epoch.*parallel_epochs"):
        make_job("seed_dense.yaml", reader={"service": {"dispatcher": "grpc://h:1", "processing_mode": "x"}})


def _start(*args):
    """A `tfstream data-service` server (TensorFlow's import takes seconds: started together)."""
    return subprocess.Popen([sys.executable, "-m", "tfstream.cli", "data-service", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _listening(proc) -> str:
    """The address a server's first line says it listens on."""
    line = proc.stdout.readline()
    match = re.search(r"listening on (grpc://\S+:\d+)", line)
    assert match, (line, proc.stderr.read() if proc.poll() is not None else "")
    return match[1]


@pytest.mark.slow
def test_the_cli_servers_serve_a_read(id_dataset):
    job, manifest, _ = id_dataset
    with socket.socket() as s:  # a free port, so that the workers start with the dispatcher
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    target = f"grpc://127.0.0.1:{port}"
    procs = [_start("dispatcher", "--port", str(port), "--host", "127.0.0.1")]
    try:
        procs += [_start("worker", "--dispatcher", target, "--port", "0", "--host", "127.0.0.1") for _ in range(2)]
        assert _listening(procs[0]) == target
        assert all(_listening(p).startswith("grpc://127.0.0.1:") for p in procs[1:])
        want = _train_ids(manifest)
        assert _ids(read(manifest, "train", _options(job, target, "parallel_epochs"))) == \
            collections.Counter({i: 2 for i in want})
        for proc in procs[::-1]:
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in procs] == [0, 0, 0]  # SIGTERM stops them cleanly
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_a_relative_dataset_path_is_named_in_a_warning(id_dataset, service, monkeypatch, caplog):
    """The workers open the shards by the paths the trainer gives them."""
    job, _, out = id_dataset
    monkeypatch.chdir(os.path.dirname(out))
    read(os.path.basename(out), "train", _options(job, service, "distributed_epoch"))  # not iterated
    assert "each worker opens them relative to its own working directory; give the dataset as an absolute path" \
        in caplog.text


def test_a_dispatcher_that_does_not_answer_is_refused(id_dataset):
    job, manifest, _ = id_dataset
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(ConfigError, match=rf"^reader.service.dispatcher: no tf.data service dispatcher answers at "
                                          rf"grpc://127.0.0.1:{port} .*start one there \(`tfstream data-service "
                                          rf"dispatcher --port {port}`\)"):
        read(manifest, "train", _options(job, f"grpc://127.0.0.1:{port}", "distributed_epoch"))


@pytest.mark.parametrize("argv,message", [
    (["worker", "--dispatcher", "localhost:5050", "--port", "0"],
     "tfstream data-service: error: --dispatcher: expected grpc://HOST:PORT"),
    (["dispatcher", "--port", "70000"], "tfstream data-service: error: --port: expected 0..65535 (0: a free port)"),
])
def test_the_cli_refuses_a_bad_address_or_port(argv, message, capsys):
    from tfstream.cli import main

    assert main(["data-service", *argv]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_multi_worker_with_a_service_is_refused_on_load(make_job):
    with pytest.raises(ConfigError, match=r"^reader.service: not with train.strategy: multi_worker .*remove "
                                          r"reader.service"):
        make_job("seed_dense.yaml", reader={"service": {"dispatcher": "grpc://127.0.0.1:5050"}},
                 train={"strategy": "multi_worker"})
