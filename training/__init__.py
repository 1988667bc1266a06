"""Reference Keras 3 trainers on tfstream datasets: models (`models`), training
(`trainer`), the serving export (`export`), the evaluation pass (`evaluation`),
headline metrics (`metrics`) and the model registry that retraining promotes into
(`registry`: ``load_champion(models_dir)`` loads the promoted model, checksums checked).

Names are imported on first use (PEP 562): `tfstream summary` reads metrics without
paying for Keras. ``import tfstream.training.models`` registers tfstream's Keras layers
(`FillNonFinite`, `LabelInverse`, and `sequence_layers`' masked layers), so that
``keras.models.load_model("model.keras")`` finds them.
"""

import importlib

_EXPORTS = {
    "FillNonFinite": "models",
    "LabelInverse": "models",
    "LengthMask": "models",
    "build_model": "models",
    "TrainError": "trainer",
    "train": "trainer",
    "export_serving": "export",
    "load_serving": "export",
    "load_champion": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
