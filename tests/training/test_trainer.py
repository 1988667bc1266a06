"""End to end on small real slices: preprocess → stream → fit → evaluate → export."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfstream.training.models  # noqa: F401 - registers LengthMask for loading .keras files
from tfstream.pipelines.config import replace
from tfstream.pipelines.manifest import load_manifest
from tfstream.pipelines.read.bucketing import bucket_plan
from tfstream.pipelines.read.reader import read
from tfstream.training.export import load_serving
from tfstream.pipelines.inspect.plots import learning_curve_panels
from tfstream.training.trainer import TrainError, train
from tfstream.transforms.codecs import decode_example


pytestmark = pytest.mark.slow  # end to end: training, or every benchmark on tiny data

@pytest.fixture(scope="module")
def flights_run(flights_job, flights_dataset, tmp_path_factory):
    job = replace(flights_job, train=replace(flights_job.train, epochs=4))
    model_dir = str(tmp_path_factory.mktemp("flights_model"))
    return job, train(job, dataset=flights_dataset, model_dir=model_dir, verbose=0)


def test_dense_beats_the_training_prior(flights_run):
    _, metrics = flights_run
    prior = metrics["baseline"]["train_prior"]
    assert prior["class"] == "arr_delay<=15" and 0.6 < prior["accuracy"] < 0.9 and 0.3 < prior["log_loss"] < 0.7
    assert 0.3 < prior["macro_f1"] < 0.5  # one class always: its F1 over two classes
    scores = metrics["eval"]
    assert scores["accuracy"] > prior["accuracy"] + 0.05 and scores["macro_f1"] > prior["macro_f1"] + 0.2
    assert metrics["beats"] == {"metric": "log_loss", "model": scores["log_loss"], "baseline": prior["log_loss"],
                                "against": "train_prior", "margin": 0.01, "beats": True}
    assert scores["log_loss"] < 0.8 * prior["log_loss"] and metrics["beats_baseline"] is True
    assert metrics["label_scaling"] is None  # classes are not scaled


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
    memory = on_disk["input_memory_mib"]
    assert 0 < memory["expected"] <= memory["worst"] and memory["budget"] is None


def _scalars(log_dir):
    """{(run, tag): {epoch: value}} from the TensorBoard event files under ``log_dir``."""
    out = {}
    for run in sorted(os.listdir(log_dir)):
        for name in sorted(os.listdir(os.path.join(log_dir, run))):
            for record in tf.data.TFRecordDataset(os.path.join(log_dir, run, name)):
                event = tf.compat.v1.Event.FromString(record.numpy())
                for value in event.summary.value:
                    assert value.metadata.plugin_data.plugin_name == "scalars"
                    out.setdefault((run, value.tag), {})[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def _png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"  # a PNG: its signature, then the IHDR chunk's width, height
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_learning_curves_and_tensorboard_logs(flights_run):
    _, metrics = flights_run
    d, history = metrics["model_dir"], metrics["history"]
    panels = learning_curve_panels(history)
    assert panels[0] == "loss" and {"auc", "accuracy"} <= set(panels) and not any(p.startswith("val_") for p in panels)
    import matplotlib.image

    image = matplotlib.image.imread(os.path.join(d, "learning_curves.png"))
    columns = min(3, len(panels))
    assert image.shape[:2] == (320 * -(-len(panels) // columns), 450 * columns)  # one panel per metric
    assert _png_size(os.path.join(d, "learning_curves.png")) == (image.shape[1], image.shape[0])

    scalars = _scalars(os.path.join(d, "logs"))
    epochs = list(range(metrics["epochs_run"]))
    for run, prefix in (("train", ""), ("validation", "val_")):
        for name in panels:
            logged = scalars[(run, f"epoch_{name}")]
            assert sorted(logged) == epochs
            np.testing.assert_allclose([logged[e] for e in epochs], history[prefix + name], rtol=1e-5)


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
    job = replace(digits_job, train=replace(digits_job.train, epochs=12))
    metrics = train(job, dataset=digits_dataset, model_dir=str(tmp_path / "model"), verbose=0)
    prior = metrics["baseline"]["train_prior"]
    assert prior["accuracy"] < 0.25 and prior["log_loss"] == pytest.approx(np.log(10), rel=0.05)  # ten digits
    assert metrics["eval"]["accuracy"] > 0.6  # 480 training sequences only; the full set reaches >= 0.95
    assert metrics["beats_baseline"] is True
    served = load_serving(metrics["export_dir"])
    features, _ = next(iter(read(digits_dataset, "eval", batch_size=8, shuffle=False)))
    probs = served({k: v.numpy() for k, v in features.items()})
    assert probs.shape == (8, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_schema_mismatch_is_refused(digits_job, flights_dataset, tmp_path):
    with pytest.raises(TrainError, match=r"the dataset.s schema differs from the config's; re-run `tfstream preprocess`"):
        train(digits_job, dataset=flights_dataset, model_dir=str(tmp_path / "m"), verbose=0)


def test_an_empty_split_is_refused(make_job, digits_npz, tmp_path):
    import numpy as np

    from tfstream.pipelines.write.beam_pipeline import preprocess

    src = dict(np.load(digits_npz))
    keep = 3  # three sequences: with these fractions the validation split gets none
    n_steps = int(src["lengths"][:keep].sum())
    np.savez(tmp_path / "tiny.npz", X=src["X"][:n_steps], lengths=src["lengths"][:keep], y=src["y"][:keep])
    job = make_job("digits_lstm.yaml", source={"path": str(tmp_path / "tiny.npz")},
                   split={"fractions": {"train": 0.98, "validation": 0.01, "eval": 0.01}})
    m = preprocess(job, output_dir=str(tmp_path / "ds"))
    assert m.num_examples("validation") == 0 and len(m.split("validation").shards) == 1
    assert len(m.split("train").shards) == 4 > m.num_examples("train")  # more shards than records: some empty
    assert sum(s.records for s in m.split("train").shards) == m.num_examples("train")
    with pytest.raises(TrainError, match=r"the .validation. split is empty, nothing to validate on; give it a larger"):
        train(job, dataset=str(tmp_path / "ds"), model_dir=str(tmp_path / "m"), verbose=0)


def test_an_interrupted_run_resumes_after_its_last_epoch(digits_job, digits_dataset, tmp_path):
    job = replace(digits_job, train=replace(digits_job.train, epochs=4))
    model_dir = str(tmp_path / "model")

    class Crash(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("the machine went away")

    with pytest.raises(RuntimeError, match="the machine went away"):
        train(job, dataset=digits_dataset, model_dir=model_dir, verbose=0, callbacks=[Crash()])
    assert os.path.isdir(os.path.join(model_dir, "checkpoints", "backup"))

    metrics = train(job, dataset=digits_dataset, model_dir=model_dir, verbose=0)
    assert metrics["resumed_at_epoch"] == 3  # epochs 1 and 2 were done before the crash
    assert metrics["epochs_run"] == 4 and len(metrics["history"]["loss"]) == 4
    val = metrics["history"]["val_loss"]
    assert metrics["best_epoch"] == val.index(min(val)) + 1
    assert not os.path.exists(os.path.join(model_dir, "checkpoints", "backup"))
    # The logs go on across the resume: every epoch once, and the curves are drawn whole.
    logged = _scalars(os.path.join(model_dir, "logs"))[("validation", "epoch_loss")]
    np.testing.assert_allclose([logged[e] for e in range(4)], val, rtol=1e-5)
    assert _png_size(os.path.join(model_dir, "learning_curves.png"))[0] > 0


def test_without_a_validation_split(digits_job, digits_dataset, tmp_path):
    job = replace(digits_job, train=replace(digits_job.train, epochs=2, validation_split=None, tensorboard=False))
    metrics = train(job, dataset=digits_dataset, model_dir=str(tmp_path / "m"), verbose=0)
    assert metrics["epochs_run"] == 2
    assert not os.path.exists(tmp_path / "m" / "logs")  # train.tensorboard: false
    assert os.path.exists(tmp_path / "m" / "learning_curves.png")
    assert "val_loss" not in metrics["history"] and len(metrics["history"]["loss"]) == 2
    assert 1 <= metrics["best_epoch"] <= 2  # chosen on the training loss


class _FedSteps(keras.layers.Layer):
    """Counts the real and padded steps of the batches the model trains on: what was fed."""

    def build(self, *shapes):
        self.real = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False)
        self.padded = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False)

    def call(self, seq, lengths, training=False):
        if training:
            self.real.assign_add(tf.reduce_sum(lengths))
            self.padded.assign_add(tf.cast(tf.shape(seq)[0] * tf.shape(seq)[1], tf.int64))
        return seq


@pytest.mark.parametrize("max_tokens", [None, 384])
def test_padding_efficiency_equals_the_batches_fed(digits_dataset, max_tokens):
    from tfstream.pipelines.read.stages import PaddingCounter
    from tfstream.training.trainer import PaddingEfficiency

    counter = PaddingCounter()
    bucketing = {"max_tokens_per_batch": max_tokens, "num_buckets": 4} if max_tokens else {}
    ds = read(digits_dataset, "train", batch_size=16, seed=3, cache="memory", padding_counter=counter, **bucketing)
    seq = keras.Input((None, 13), name="mfcc")
    lengths = keras.Input((), dtype="int64", name="mfcc_length")
    fed = _FedSteps()
    x = keras.layers.GlobalAveragePooling1D()(fed(seq, lengths))
    model = keras.Model({"mfcc": seq, "mfcc_length": lengths}, keras.layers.Dense(10, activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy")
    by_hand, logged = [], []

    class Compare(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            fed.real.assign(0)
            fed.padded.assign(0)

        def on_epoch_end(self, epoch, logs=None):
            by_hand.append(int(fed.real.numpy()) / int(fed.padded.numpy()))
            logged.append(logs["padding_efficiency"])

    model.fit(ds, epochs=3, callbacks=[PaddingEfficiency(counter), Compare()], shuffle=False, verbose=0)
    assert logged == by_hand  # exact, every epoch
    if max_tokens is None:
        assert len(set(by_hand)) > 1  # batches padded to their longest: the value moves with the shuffle
    else:
        plan = bucket_plan(digits_dataset, "train", "mfcc", max_tokens_per_batch=max_tokens, num_buckets=4,
                           max_batch_size=16)
        assert by_hand == pytest.approx([plan.padding_efficiency] * 3)


def test_trainer_logs_padding_efficiency(digits_job, digits_dataset, tmp_path):
    import csv
    job = replace(digits_job, train=replace(digits_job.train, epochs=2))
    metrics = train(job, dataset=digits_dataset, model_dir=str(tmp_path / "m"), verbose=0)
    got = metrics["history"]["padding_efficiency"]
    assert len(got) == 2 and all(0.3 < e < 1 for e in got)
    with open(os.path.join(metrics["model_dir"], "history.csv"), newline="") as f:
        assert "padding_efficiency" in next(csv.reader(f))


def test_bucketed_training(digits_job, digits_dataset, tmp_path):
    reader = replace(digits_job.reader, max_tokens_per_batch=384, num_buckets=4)
    job = replace(digits_job, reader=reader, train=replace(digits_job.train, epochs=2))
    metrics = train(job, dataset=digits_dataset, model_dir=str(tmp_path / "m"), verbose=0)
    plan = bucket_plan(digits_dataset, "train", "mfcc", max_tokens_per_batch=384, num_buckets=4,
                       max_batch_size=reader.batch_size)
    got = metrics["history"]["padding_efficiency"]
    assert got == pytest.approx([plan.padding_efficiency] * 2)  # every sequence padded to its bucket's boundary
    assert metrics["eval"]["accuracy"] > metrics["baseline"]["train_prior"]["accuracy"]


def test_tabular_jobs_have_no_padding_efficiency(flights_run):
    _, metrics = flights_run
    assert "padding_efficiency" not in metrics["history"]


def test_reader_bucketing_keys(make_job):
    from tfstream.pipelines.config import ConfigError

    job = make_job("digits_lstm.yaml", reader={"max_tokens_per_batch": 640, "num_buckets": 12})
    assert job.reader.max_tokens_per_batch == 640 and job.reader.num_buckets == 12
    assert make_job("flights_dense.yaml").reader.max_tokens_per_batch is None
    with pytest.raises(ConfigError, match=r"^reader.max_tokens_per_batch: expected 1..100000000 \(or leave it out: "
                                          r"no bucketing\), got 0$"):
        make_job("digits_lstm.yaml", reader={"max_tokens_per_batch": 0})
    with pytest.raises(ConfigError, match=r"^reader.num_buckets: expected 1..1000, got 0$"):
        make_job("digits_lstm.yaml", reader={"max_tokens_per_batch": 640, "num_buckets": 0})
    with pytest.raises(ConfigError, match=r"^reader.num_buckets: buckets are made only with max_tokens_per_batch; "
                                          r"set it, or remove num_buckets$"):
        make_job("flights_dense.yaml", reader={"num_buckets": 4})
    with pytest.raises(ConfigError, match=r"^reader.max_tokens_per_batch: expected an integer, got 'many'$"):
        make_job("digits_lstm.yaml", reader={"max_tokens_per_batch": "many"})


def test_a_memory_budget_too_small_refuses_to_train(flights_job, flights_dataset, tmp_path):
    # (not cycle_length: above the split's 3 shards it is counted as 3 read buffers, as read() runs it)
    job = replace(flights_job, reader=replace(flights_job.reader, prefetch=1024, memory_budget_mb=16))
    with pytest.raises(TrainError, match=r"the input pipeline needs about [\d.]+ MiB, more than "
                                         r"reader.memory_budget_mb 16; the largest part is the prefetch "
                                         r"\([\d.]+ MiB\): lower reader.prefetch, or raise reader.memory_budget_mb"):
        train(job, dataset=flights_dataset, model_dir=str(tmp_path / "m"), verbose=0)
    assert not os.path.exists(tmp_path / "m" / "checkpoints")  # refused before anything is written
