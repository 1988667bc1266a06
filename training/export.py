"""Export a trained model for serving raw features, and load it back.

The export is a TensorFlow SavedModel (Keras 3 `Model.export`) with a ``serve``
endpoint (also the ``serving_default`` signature) that takes a dict of raw feature
tensors: the numbers and strings of the source, not preprocessed values. TF Serving,
`saved_model_cli` and `tf.saved_model.load` read it without tfstream or Keras. A
regression model's export predicts in the label's units: it ends with the inverse of
the label's transform and standardization (`models.LabelInverse`).

On every Keras backend the export is the same TensorFlow SavedModel. On TensorFlow the
trained model is exported as it is (`export_serving`). On another backend (JAX, PyTorch)
the trained model takes categorical features as ids (`pipelines.read.lookups`), so its
own export would serve ids: `export_saved` exports the saved ``model.keras`` (a format
every backend reads) in a child process on the TensorFlow backend instead, with each
categorical input's `StringLookup` put back in front of it (the reader's, by its
config). The export then takes raw features and serves the trained weights: on the
same raw inputs it gives the trained model's predictions (tests/training/test_backends.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable, Mapping, Optional

import numpy as np


def serving_model(model, label_scaling=None):
    """``model``, followed by the inverse of ``label_scaling`` (a `LabelScaling`; None or
    an identity: ``model`` itself)."""
    if label_scaling is None or label_scaling.is_identity:
        return model
    import keras

    from tfstream.training.models import LabelInverse

    inverse = LabelInverse(**label_scaling.to_json(), name="label_units")
    return keras.Model(model.input, inverse(model.output), name=f"{model.name}_serving")


def export_serving(model, path: str, label_scaling=None) -> str:
    """Write ``model`` as a SavedModel at ``path`` (overwritten) and return the path.

    Args:
        label_scaling: a regression label's `LabelScaling` (`Manifest.label_scaling`):
            the export inverts it, and predicts in the label's units.
    """
    import shutil

    shutil.rmtree(path, ignore_errors=True)
    serving_model(model, label_scaling).export(path, format="tf_saved_model", verbose=False)
    return path


def export_saved(model_file: str, path: str, label_scaling=None,
                 lookups: Optional[Mapping[str, Mapping[str, Any]]] = None) -> str:
    """Export the saved model ``model_file`` (``model.keras``) as `export_serving` would on
    the TensorFlow backend, from any backend: in a child process with
    ``KERAS_BACKEND=tensorflow``.

    Args:
        label_scaling: as in `export_serving`.
        lookups: input name → the config of the `StringLookup` (``layer.get_config()``)
            that maps its raw strings to the ids the model takes; the export takes the
            strings.

    Raises:
        RuntimeError: the child failed (its last lines of stderr are in the message);
            ``model_file`` is left as it was.
    """
    request = {"model_file": os.path.abspath(model_file), "path": os.path.abspath(path),
               "label_scaling": None if label_scaling is None else label_scaling.to_json(),
               "lookups": dict(lookups or {})}
    # The export needs no GPU (the trained model runs on the parent's backend, which may hold them).
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", __name__], input=json.dumps(request), env=env, text=True,
                          capture_output=True)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"exporting {model_file} on the TensorFlow backend (a child process with "
                           f"KERAS_BACKEND=tensorflow) failed with exit status {done.returncode}; the trained "
                           f"model is saved in {model_file}. Its stderr ends:\n{tail}")
    return path


def _with_lookups(model, lookups: Mapping[str, Mapping[str, Any]]):
    """``model`` with a `StringLookup` (from its config) in front of each input it names:
    those inputs take strings."""
    if not lookups:
        return model
    import keras

    inputs, mapped = {}, {}
    for name, tensor in dict(model.input).items():
        if name in lookups:
            inputs[name] = keras.Input(shape=tensor.shape[1:], dtype="string", name=name)
            mapped[name] = keras.layers.StringLookup.from_config(dict(lookups[name]))(inputs[name])
        else:
            inputs[name] = mapped[name] = keras.Input(shape=tensor.shape[1:], dtype=tensor.dtype, name=name)
    return keras.Model(inputs, model(mapped), name=model.name)


def _export_request(request: Mapping[str, Any]) -> None:
    """`export_saved`'s child: on the TensorFlow backend, load, wrap, export."""
    import keras

    import tfstream.training.models  # noqa: F401  (registers tfstream's layers for load_model)
    from tfstream.transforms.label_scaling import LabelScaling

    if keras.backend.backend() != "tensorflow":
        raise SystemExit(f"the export runs on the TensorFlow backend; KERAS_BACKEND is {keras.backend.backend()!r}")
    model = keras.models.load_model(request["model_file"], compile=False)
    scaling = request["label_scaling"]
    export_serving(_with_lookups(model, request["lookups"]), request["path"],
                   None if scaling is None else LabelScaling(**scaling))


def load_serving(path: str) -> Callable[[Mapping[str, Any]], np.ndarray]:
    """Load an export; the returned function maps a dict of raw feature arrays (one
    entry per example) to the model's output as a NumPy array.

    Example:
        >>> from tfstream.training.trainer import train
        >>> job = replace(load_config("configs/flights_dense.yaml"), train=TrainConfig(epochs=1, eval_split="eval"))
        >>> metrics = train(job, dataset=dataset_dir, model_dir=str(tmp_path / "model"), verbose=0)
        >>> predict = load_serving(metrics["export_dir"])
        >>> p = predict({"month": [7], "day": [2], "sched_dep_time": [1029], "sched_arr_time": [1209],
        ...              "dep_delay": [95.0], "distance": [872.0], "carrier": ["EV"], "origin": ["EWR"],
        ...              "dest": ["STL"]})
        >>> p.shape, bool(0 <= p[0, 0] <= 1)
        ((1, 1), True)
    """
    import tensorflow as tf

    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    specs = signature.structured_input_signature[1]

    def predict(features: Mapping[str, Any]) -> np.ndarray:
        missing = sorted(set(specs) - set(features))
        if missing:
            raise KeyError(f"missing raw feature(s) {missing}; the export takes {sorted(specs)}")
        inputs = {name: tf.constant(np.asarray(features[name]), dtype=spec.dtype) for name, spec in specs.items()}
        outputs = signature(**inputs)
        (value,) = outputs.values()
        return value.numpy()

    return predict


if __name__ == "__main__":
    _export_request(json.loads(sys.stdin.read()))
