import keras
import numpy as np
import pytest

from tfstream.pipelines.manifest import load_manifest
from tfstream.training.models import LengthMask, build_dense, build_lstm


def test_dense_normalizes_with_the_manifest_statistics(flights_dataset):
    m = load_manifest(flights_dataset)
    stats = m.split("train")
    model = build_dense(m.schema, stats.features)
    layer = model.get_layer("dep_delay_normalized")
    np.testing.assert_allclose(np.ravel(layer.mean), [stats.statistics("dep_delay").mean], rtol=1e-6)
    lookup = model.get_layer("carrier_lookup")
    assert lookup.get_vocabulary()[1:] == [t for t, _ in stats.statistics("carrier").vocabulary]
    assert model.output_shape == (None, 1)


def test_dense_refuses_sequences(digits_dataset):
    m = load_manifest(digits_dataset)
    with pytest.raises(ValueError, match="build_dense: the schema has sequence features; use build_lstm"):
        build_dense(m.schema, m.split("train").features)


def test_length_mask():
    mask = LengthMask()(np.zeros((2, 4, 3), np.float32), np.array([1, 3]))
    np.testing.assert_array_equal(np.asarray(mask), [[True, False, False, False], [True, True, True, False]])


def test_lstm_output_ignores_padding(digits_dataset):
    m = load_manifest(digits_dataset)
    model = build_lstm(m.schema, m.split("train").features, lstm_units=(8,), hidden_units=(8,))
    rng = np.random.default_rng(0)
    seq = rng.normal(size=(3, 5, 13)).astype(np.float32)
    lengths = np.array([5, 2, 4])
    for i, n in enumerate(lengths):
        seq[i, n:] = 0
    padded = np.concatenate([seq, rng.normal(size=(3, 7, 13)).astype(np.float32)], axis=1)  # junk past the end
    a = model.predict({"mfcc": seq, "mfcc_length": lengths}, verbose=0)
    b = model.predict({"mfcc": padded, "mfcc_length": lengths}, verbose=0)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert a.shape == (3, 10)
    np.testing.assert_allclose(a.sum(axis=1), 1.0, rtol=1e-5)


def test_imputed_features_are_imputed_in_the_model_too(flights_dataset):
    """A feature imputed with the training mean at write time is imputed the same way
    when the model meets a NaN at serving time; other features' oov buckets follow the
    statistics."""
    import dataclasses

    m = load_manifest(flights_dataset)
    stats = dict(m.split("train").features)
    stats["dep_delay"] = dataclasses.replace(stats["dep_delay"], impute="mean")
    stats["carrier"] = dataclasses.replace(stats["carrier"], oov_buckets=3)
    model = build_dense(m.schema, stats)
    assert model.get_layer("carrier_lookup").vocabulary_size() == len(stats["carrier"].vocabulary) + 3
    row = {"month": np.array([3]), "day": np.array([9]), "sched_dep_time": np.array([830]),
           "sched_arr_time": np.array([1100]), "distance": np.array([1400.0], np.float32),
           "carrier": np.array([b"UA"], object), "origin": np.array([b"EWR"], object),
           "dest": np.array([b"IAH"], object)}
    mean = stats["dep_delay"].mean
    as_mean = np.asarray(model({**row, "dep_delay": np.array([mean], np.float32)}))
    as_nan = np.asarray(model({**row, "dep_delay": np.array([np.nan], np.float32)}))
    np.testing.assert_allclose(as_nan, as_mean, rtol=1e-6)
    assert np.isfinite(as_nan).all()


def test_regression_baseline_is_the_eval_mse_of_the_training_mean():
    from tfstream.pipelines.manifest import Manifest
    from tfstream.training.metrics import baseline
    from tfstream.transforms.analyzers import DatasetStats
    from tfstream.transforms.schema import Feature, Label, Schema

    schema = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
    stats = DatasetStats(schema)

    def split(ys):
        return {"statistics": stats.extract_output(stats.add_inputs(stats.create_accumulator(),
                                                                    [{"x": 0.0, "y": y} for y in ys]))}

    m = Manifest({"schema": schema.to_json(), "splits": {"train": split([1.0, 3.0]), "eval": split([4.0, 6.0])}}, "/x")
    assert baseline(m, "train", "eval") == {"name": "train_mean", "mse": pytest.approx(((4 - 2) ** 2 + (6 - 2) ** 2) / 2)}
