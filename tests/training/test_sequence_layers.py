"""The long-sequence options of the reference sequence model: masked z-score, strided
Conv1D front-end, GRU, pooling; padding never changes a prediction."""

from types import SimpleNamespace

import keras
import numpy as np
import pytest

from tfstream.pipelines.config import config_from_dict
from tfstream.pipelines.config_errors import ConfigError
from tfstream.training.models import build_lstm
from tfstream.training.sequence_layers import LengthMask, MaskedPooling, MaskedStandardize, StridedLengths

LONG = {"cell": "gru", "conv_layers": 2, "conv_filters": 8, "conv_kernel_size": 5, "conv_strides": 3,
        "standardize": "per_sequence", "pooling": "mean_max"}


def _job(**model):
    return config_from_dict({
        "name": "long", "source": {"format": "npz", "path": "x.npz", "lengths_key": "lengths"},
        "features": [{"name": "s", "type": "sequence", "column": "X", "dim": 2}],
        "label": {"column": "y", "task": "multiclass", "num_classes": 3},
        "model": {"type": "lstm", "lstm_units": [6], "hidden_units": [5], **model}})


def _model(**options):
    stats = {"s": SimpleNamespace(mean=[1.0, -2.0], variance=[4.0, 9.0])}
    return build_lstm(_job().schema(), stats, lstm_units=(6,), hidden_units=(5,), **options)


def _padded(seqs, steps, fill):
    out = np.full((len(seqs), steps, seqs[0].shape[1]), fill, np.float32)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = s
    return out


@pytest.mark.parametrize("options", [LONG, {**LONG, "cell": "lstm", "pooling": "max"},
                                     {**LONG, "pooling": "last", "conv_strides": 2, "conv_kernel_size": 4},
                                     {"standardize": "per_sequence", "pooling": "mean", "conv_layers": 0},
                                     {}])  # the defaults
def test_padding_never_changes_a_prediction(options):
    """Zeros or huge garbage (and inf) past the end, a longer padded batch, or the
    sequence alone: the same probabilities."""
    model = _model(**options)
    rng = np.random.default_rng(0)
    lengths = np.array([37, 1, 12, 30, 2])
    seqs = [rng.normal(3, 5, (n, 2)).astype(np.float32) for n in lengths]
    zeros = model.predict({"s": _padded(seqs, 37, 0.0), "s_length": lengths}, verbose=0)
    garbage = _padded(seqs, 50, 1e30)
    garbage[0, 40] = np.inf
    junk = model.predict({"s": garbage, "s_length": lengths}, verbose=0)
    np.testing.assert_allclose(junk, zeros, rtol=1e-5, atol=1e-6)
    for i, s in enumerate(seqs):
        alone = model.predict({"s": s[None], "s_length": lengths[i:i + 1]}, verbose=0)
        np.testing.assert_allclose(alone[0], zeros[i], rtol=1e-5, atol=1e-6)
    assert np.isfinite(zeros).all() and zeros.shape == (5, 3)


def test_conv_front_end_shortens_by_ceil_of_the_strides():
    model = _model(**LONG)
    np.testing.assert_array_equal(np.asarray(StridedLengths(3)(np.array([0, 1, 2, 3, 4, 9, 10]))),
                                  [0, 1, 1, 1, 2, 3, 4])
    probe = keras.Model(model.inputs, [model.get_layer("conv_1").output, model.get_layer("conv_mask").output])
    x = np.zeros((2, 37, 2), np.float32)
    steps, mask = probe.predict({"s": x, "s_length": np.array([37, 10])}, verbose=0)
    assert steps.shape == (2, 5, 8)  # 37 → 13 → 5
    np.testing.assert_array_equal(mask.sum(axis=1), [5, 2])  # 10 → 4 → 2
    assert [layer.name for layer in model.layers if "gru" in layer.name] == ["gru_0"]


def test_gru_and_lstm_cells():
    assert isinstance(_model(cell="gru").get_layer("gru_0"), keras.layers.GRU)
    assert isinstance(_model(cell="lstm").get_layer("lstm_0"), keras.layers.LSTM)
    assert isinstance(_model().get_layer("gru_0"), keras.layers.GRU)  # the default


def test_per_sequence_zscore_is_per_sequence_and_channel_over_real_steps():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (2, 6, 3)).astype(np.float32) * [1, 10, 100] + [5, -5, 50]
    lengths = np.array([6, 4])
    mask = LengthMask()(x, lengths)
    z = np.asarray(MaskedStandardize()(x, mask))
    for i, n in enumerate(lengths):
        real = x[i, :n]
        np.testing.assert_allclose(z[i, :n], (real - real.mean(0)) / real.std(0), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(z[i, n:], 0)


def test_pooling_over_real_steps_only():
    x = np.array([[[1, -1], [3, -3], [100, 100]], [[-7, 2], [50, 50], [50, 50]]], np.float32)
    mask = LengthMask()(x, np.array([2, 1]))
    np.testing.assert_allclose(np.asarray(MaskedPooling("mean_max")(x, mask)),
                               [[2, -2, 3, -1], [-7, 2, -7, 2]])
    empty = LengthMask()(x, np.array([0, 0]))
    np.testing.assert_array_equal(np.asarray(MaskedPooling("max")(x, empty)), 0)


def test_long_sequence_model_saves_and_reloads(tmp_path):
    model = _model(**LONG)
    x = {"s": np.random.default_rng(2).normal(size=(2, 20, 2)).astype(np.float32), "s_length": np.array([20, 7])}
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(again.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("model, message", [
    ({"cell": "rnn"}, "model.cell: expected lstm or gru; got 'rnn'"),
    ({"pooling": "sum"}, "model.pooling: expected one of last, mean, max, mean_max; got 'sum'"),
    ({"conv_layers": 9}, "model.conv_layers: expected 0..8, got 9"),
    ({"conv_kernel_size": 3, "conv_strides": 4}, "model.conv_strides: expected 1..3, got 4; strides wider than"),
    ({"standardize": "global"}, "model.standardize: expected none or per_sequence; got 'global'"),
])
def test_bad_sequence_options_are_refused(model, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _job(**model)


def test_sequence_options_on_a_dense_model_are_refused():
    with pytest.raises(ConfigError, match=r"model\.pooling: only an lstm model \(a sequence feature\) has it"):
        config_from_dict({"name": "t", "source": {"format": "csv", "path": "x.csv"},
                          "features": [{"name": "x", "type": "float"}], "label": {"column": "y", "task": "regression"},
                          "model": {"type": "dense", "pooling": "mean"}})


def test_a_dense_config_written_out_whole_loads_again():
    """The defaults of the sequence options are not "set" options: a dense config's
    `to_json` (as the manifest records it) holds them, and loads."""
    job = config_from_dict({"name": "t", "source": {"format": "csv", "path": "x.csv"},
                            "features": [{"name": "x", "type": "float"}],
                            "label": {"column": "y", "task": "regression"}, "model": {"type": "dense"}})
    assert config_from_dict(job.to_json()) == job
