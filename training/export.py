"""Export a trained model for serving raw features, and load it back.

The export is a TensorFlow SavedModel (Keras 3 `Model.export`) with a ``serve``
endpoint (also the ``serving_default`` signature) that takes a dict of raw feature
tensors: the numbers and strings of the source, not preprocessed values. TF Serving,
`saved_model_cli` and `tf.saved_model.load` read it without tfstream or Keras. A
regression model's export predicts in the label's units: it ends with the inverse of
the label's transform and standardization (`models.LabelInverse`).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

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
