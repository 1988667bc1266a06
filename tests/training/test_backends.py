"""`tfstream train` on Keras's JAX and PyTorch backends, against the same runs on TensorFlow.

Each backend trains in a child process (``KERAS_BACKEND`` is read once, when Keras is
imported; `backend_run.py`): the Dense reference model on the flights slice (with its
categorical features: on JAX and PyTorch they are looked up in the reader) and the
default sequence model (Conv1D front-end, GRU, mean_max pooling) on the digits slice,
bucketed by length (``reader.max_tokens_per_batch``; 2 buckets of up to 128 sequences: on
JAX every new batch shape is a new XLA compilation; with the config's 8 buckets of 32, 14
training batch shapes, JAX took 145 s to fit 6 epochs here, TensorFlow 7 s; PyTorch fit
the 12 epochs in 29 s with those, 7 s with these), from the same datasets with the same
seed. Then: the quality matches TensorFlow's within the run-to-run spread, the exports serve raw
features and give the trained model's predictions, and padding does not change a score.

The PyTorch runs need torch's CPU build (PyPI's torch is the 3 GB CUDA build): `make test`
installs it where it can (`make torch`); elsewhere they skip, saying how to install it.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tfstream.testing import ROOT

pytestmark = pytest.mark.slow

TORCH_MISSING = importlib.util.find_spec("torch") is None
TORCH_SKIP = pytest.mark.skipif(TORCH_MISSING, reason=(
    "torch is not installed: `make torch` installs its CPU build where it can find one, or "
    "`pip install torch --index-url https://download.pytorch.org/whl/cpu`"))
# The backends compared with TensorFlow; torch's runs skip when torch is not installed.
OTHERS = ("jax", pytest.param("torch", marks=TORCH_SKIP))
BACKENDS = ("tensorflow", *OTHERS)
SEED = 1
DENSE_EPOCHS, LSTM_EPOCHS = 4, 12
LSTM_READER = {"batch_size": 128, "num_buckets": 2, "max_tokens_per_batch": 6000}
# How far JAX or PyTorch may be from TensorFlow (same data, same seed; the backends draw
# different initial weights from it): the run-to-run spread of this training, measured
# here (2 cores) over seeds 1-4 on TensorFlow, 1-3 on JAX and 1-3 on PyTorch, eval split:
#   dense log-loss: TensorFlow 0.2423-0.2442, JAX 0.2408-0.2503, PyTorch 0.2379-0.2410
#     (range of all 10: 0.0124)
#   dense AUC: TensorFlow 0.9150-0.9237, JAX 0.9145-0.9194, PyTorch 0.9184-0.9244 (range 0.0099)
#   sequence accuracy: TensorFlow 0.887-1.000, JAX 0.887-0.962, PyTorch 0.925-0.943
#     (range 0.113; 53 eval sequences)
#   sequence log-loss: TensorFlow 0.080-0.383, JAX 0.130-0.296, PyTorch 0.153-0.241 (range 0.303)
# The same-seed differences measured (JAX) were at most 0.0068, 0.0050, 0.038 and 0.122. Two
# runs can differ by the whole range: the tolerance is the range, rounded up.
TOLERANCE = {("dense", "log_loss"): 0.013, ("dense", "auc"): 0.01,
             ("lstm", "accuracy"): 0.12, ("lstm", "log_loss"): 0.31}


@pytest.fixture(scope="module")
def runs(flights_csv, flights_dataset, digits_npz, digits_dataset, tmp_path_factory):
    # The children at once: each spends much of its time in imports, compilation and the
    # export's own child process, so two cores take them in about the time of the longer.
    children = {}
    for backend in ("tensorflow", "jax") + (() if TORCH_MISSING else ("torch",)):
        request = {"flights_csv": flights_csv, "flights_dataset": flights_dataset, "digits_npz": digits_npz,
                   "digits_dataset": digits_dataset, "out": str(tmp_path_factory.mktemp(f"backend_{backend}")),
                   "seed": SEED, "dense_epochs": DENSE_EPOCHS, "lstm_epochs": LSTM_EPOCHS,
                   "lstm_reader": LSTM_READER, "models": ["dense", "lstm"]}
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        children[backend] = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "tests", "training", "backend_run.py"), json.dumps(request)],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out = {}
    for backend, child in children.items():
        stdout, stderr = child.communicate()
        assert child.returncode == 0, f"{backend}: {stderr[-4000:]}"
        out[backend] = json.loads(stdout.strip().splitlines()[-1])
    return out

@pytest.mark.parametrize("backend", BACKENDS)
def test_each_run_records_its_backend(runs, backend):
    run = runs[backend]
    assert run["backend"] == backend
    for model in ("dense", "lstm"):
        assert run[model]["metrics"]["backend"] == backend
        assert run[model]["metrics"]["model"] == model
    # Off TensorFlow the trained model takes the categorical ids the reader looked up.
    assert run["dense"]["carrier_input"] == ("string" if backend == "tensorflow" else "int64")


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("model,metric", sorted(TOLERANCE))
def test_learns_as_well_as_tensorflow(runs, backend, model, metric):
    tf_score = runs["tensorflow"][model]["metrics"]["eval"][metric]
    score = runs[backend][model]["metrics"]["eval"][metric]
    assert abs(score - tf_score) <= TOLERANCE[model, metric], (backend, model, metric, tf_score, score)
    assert runs[backend][model]["metrics"]["beats_baseline"] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_export_serves_raw_features_as_the_trained_model_predicts(runs, backend):
    dense, lstm = runs[backend]["dense"], runs[backend]["lstm"]
    # Raw strings in; the trained model's predictions (from the reader's ids off TensorFlow) out.
    assert dense["served_shape"] == [64, 1] and dense["export_max_abs_diff"] < 1e-5
    assert all(0 < p < 1 for p in dense["unseen_served"])  # unseen carriers: the OOV bucket
    assert lstm["served_shape"] == [16, 10] and lstm["export_max_abs_diff"] < 1e-5
    assert lstm["padding_max_abs_diff"] < 1e-5  # 37 more padded steps of garbage change nothing


@pytest.mark.parametrize("backend", BACKENDS)
def test_outputs_on_disk(runs, backend):
    import keras

    import tfstream.training.models  # noqa: F401  (registers tfstream's layers for load_model)

    for model in ("dense", "lstm"):
        metrics = runs[backend][model]["metrics"]
        model_dir = metrics["model_dir"]
        on_disk = json.load(open(os.path.join(model_dir, "metrics.json"), encoding="utf-8"))
        assert on_disk["backend"] == backend and on_disk["eval"] == metrics["eval"]
        with open(os.path.join(model_dir, "history.csv"), encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == metrics["epochs_run"] == (DENSE_EPOCHS if model == "dense" else LSTM_EPOCHS)
        if model == "lstm":  # the bucketed batches' real ÷ padded steps, every epoch
            efficiency = [float(r["padding_efficiency"]) for r in rows]
            assert all(0 < e < 1 for e in efficiency) and len(set(efficiency)) == 1  # the same buckets each epoch
        # model.keras is backend-neutral: this process (TensorFlow) reloads the JAX and PyTorch runs' too
        reloaded = keras.models.load_model(os.path.join(model_dir, "model.keras"))
        assert reloaded.name == f"tfstream_{model}"
        assert os.path.exists(os.path.join(model_dir, "export", "saved_model.pb"))



@pytest.mark.parametrize("backend", OTHERS)
def test_retrain_refuses_a_backend_other_than_tensorflow(runs, backend):
    assert runs[backend]["retrain_refused"].startswith(
        f"tfstream retrain runs on the TensorFlow backend only; KERAS_BACKEND is '{backend}'. Unset KERAS_BACKEND")
    assert runs["tensorflow"]["retrain_refused"] is None
