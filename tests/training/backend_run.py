"""The child process of test_backends.py: trains the reference models on the Keras backend
of its environment (``KERAS_BACKEND``) and checks the exports against the trained models.

Usage: ``KERAS_BACKEND=jax python backend_run.py REQUEST_JSON`` with ``{"flights_csv",
"flights_dataset", "digits_npz", "digits_dataset", "out", "seed", "dense_epochs",
"lstm_epochs", "models": ["dense", "lstm"]}``; prints one JSON line: per model, the metrics
and what the checks measured.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np


def _eval_records(manifest, n: int):
    import tensorflow as tf

    from tfstream.transforms.codecs import decode_example

    compression = "GZIP" if manifest.compression == "gzip" else ""
    records = [r.numpy() for r in tf.data.TFRecordDataset(manifest.shard_paths("eval"),
                                                          compression_type=compression).take(n)]
    return [decode_example(r, manifest.schema) for r in records]


def _dense(request: dict) -> dict:
    import keras

    from tfstream.pipelines.config import config_from_dict, replace
    from tfstream.pipelines.manifest import load_manifest
    from tfstream.pipelines.read.reader import read
    from tfstream.testing import job_dict
    from tfstream.training.export import load_serving
    from tfstream.training.models import lookups_in_model
    from tfstream.training.trainer import train

    job = config_from_dict(job_dict("flights_dense.yaml", source={"path": request["flights_csv"]},
                                    output={"num_shards": {"train": 3, "validation": 1, "eval": 1},
                                            "compression": "gzip"}))
    job = replace(job, train=replace(job.train, epochs=request["dense_epochs"], seed=request["seed"]))
    metrics = train(job, dataset=request["flights_dataset"], model_dir=os.path.join(request["out"], "dense"),
                    verbose=0)
    manifest = load_manifest(request["flights_dataset"])
    # The export takes raw values (strings for the categoricals) on every backend; the
    # reloaded model takes what the reader gives on this backend (ids off TensorFlow).
    rows = _eval_records(manifest, 64)
    raw = {f.name: np.array([row[f.name] for row in rows]) for f in manifest.schema.features}
    served = load_serving(metrics["export_dir"])(raw)
    model = keras.models.load_model(os.path.join(metrics["model_dir"], "model.keras"))
    ids = None if lookups_in_model() else "train"
    features, _ = next(iter(read(manifest, "eval", batch_size=64, shuffle=False, categorical_ids=ids)))
    predicted = np.asarray(model.predict_on_batch({k: v.numpy() for k, v in features.items()}))
    unseen = {k: v[:2] for k, v in raw.items()}
    unseen["carrier"] = np.array(["no such carrier", "ZZ"])  # out-of-vocabulary: served, not refused
    return {"metrics": metrics, "export_max_abs_diff": float(np.max(np.abs(served - predicted))),
            "served_shape": list(served.shape), "carrier_input": str(model.input["carrier"].dtype),
            "unseen_served": load_serving(metrics["export_dir"])(unseen).reshape(-1).tolist()}


def _lstm(request: dict) -> dict:
    import keras

    from tfstream.pipelines.config import config_from_dict, replace
    from tfstream.pipelines.read.reader import read
    from tfstream.testing import job_dict
    from tfstream.training.export import load_serving
    from tfstream.training.trainer import train

    # The default sequence model (Conv1D front-end, GRU, mean_max), bucketed by length
    # (reader.max_tokens_per_batch; with request["lstm_reader"]'s overrides).
    job = config_from_dict(job_dict("digits_lstm.yaml", source={"path": request["digits_npz"]},
                                    reader=request.get("lstm_reader", {})))
    assert job.reader.max_tokens_per_batch and job.require_model().conv_layers and job.require_model().cell == "gru"
    job = replace(job, train=replace(job.train, epochs=request["lstm_epochs"], seed=request["seed"]))
    metrics = train(job, dataset=request["digits_dataset"], model_dir=os.path.join(request["out"], "lstm"),
                    verbose=0)
    model = keras.models.load_model(os.path.join(metrics["model_dir"], "model.keras"))
    features, _ = next(iter(read(request["digits_dataset"], "eval", batch_size=16, shuffle=False)))
    features = {k: v.numpy() for k, v in features.items()}
    predicted = np.asarray(model.predict_on_batch(features))
    # Served with 37 more padded steps holding garbage: the lengths mask them out.
    (name,) = [k for k in features if not k.endswith("_length")]
    padded = dict(features)
    garbage = np.full((features[name].shape[0], 37, features[name].shape[2]), 1e3, np.float32)
    padded[name] = np.concatenate([features[name], garbage], axis=1)
    serve = load_serving(metrics["export_dir"])
    served, served_padded = serve(features), serve(padded)
    return {"metrics": metrics, "export_max_abs_diff": float(np.max(np.abs(served - predicted))),
            "padding_max_abs_diff": float(np.max(np.abs(served_padded - served))),
            "served_shape": list(served.shape)}


def _retrain_refused():
    """`retrain`'s refusal off TensorFlow (before it reads or writes anything); None on TensorFlow."""
    from tfstream.pipelines.config import load_config
    from tfstream.retraining import retrain
    from tfstream.training.trainer import TrainError

    import keras

    if keras.backend.backend() == "tensorflow":
        return None  # (retrain would run: tests/test_retrain.py runs it)
    try:
        retrain(load_config("configs/flights_retrain.yaml"))
    except TrainError as e:
        return str(e)
    return "not refused"


def main() -> None:
    request = json.loads(sys.argv[1])
    import keras

    out = {"backend": keras.backend.backend()}
    for name in request["models"]:
        out[name] = {"dense": _dense, "lstm": _lstm}[name](request)
    out["retrain_refused"] = _retrain_refused()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
