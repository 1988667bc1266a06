"""Reference Keras 3 trainers on tfstream datasets: models, training, export."""

from tfstream.training.export import export_serving, load_serving
from tfstream.training.models import FillNonFinite, LengthMask, build_dense, build_lstm, build_model, compile_for
from tfstream.training.trainer import TrainError, baseline, train

__all__ = [
    "FillNonFinite",
    "LengthMask",
    "TrainError",
    "baseline",
    "build_dense",
    "build_lstm",
    "build_model",
    "compile_for",
    "export_serving",
    "load_serving",
    "train",
]
