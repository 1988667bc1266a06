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


def test_label_inverse_inverts_the_label_scaling_and_reloads(tmp_path):
    """The layer the serving export ends with: model units → the label's units."""
    from tfstream.training.models import LabelInverse
    from tfstream.transforms.label_scaling import LabelScaling

    scaling = LabelScaling("log1p", mean=6.9, std=0.8)
    z = np.array([[-2.0], [0.0], [1.5]], np.float32)
    x = keras.Input((1,))
    model = keras.Model(x, LabelInverse(**scaling.to_json())(x))
    np.testing.assert_allclose(model.predict(z, verbose=0), scaling.invert(z), rtol=1e-5)
    assert scaling.invert([[0.0]])[0, 0] == pytest.approx(np.expm1(6.9))
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.models.load_model(tmp_path / "m.keras").predict(z, verbose=0),
                               scaling.invert(z), rtol=1e-5)


def test_the_model_on_the_readers_ids_is_the_model_on_strings(flights_dataset):
    """Off TensorFlow the reader looks categorical features up (`categorical_ids`) and the
    model takes ids (``lookups=False``): with the same weights, it gives what the model
    with its own `StringLookup` gives on the strings, unseen tokens (hashed into several
    out-of-vocabulary buckets) included."""
    import dataclasses

    import tensorflow as tf

    from tfstream.pipelines.read.lookups import categorical_ids
    from tfstream.pipelines.read.reader import read

    m = load_manifest(flights_dataset)
    stats = dict(m.split("train").features)
    stats["carrier"] = dataclasses.replace(stats["carrier"], oov_buckets=3)
    strings, ids = build_dense(m.schema, stats), build_dense(m.schema, stats, lookups=False)
    assert ids.input["carrier"].dtype == "int64" and strings.input["carrier"].dtype == "string"
    for layer in ids.layers:
        if layer.weights:
            layer.set_weights(strings.get_layer(layer.name).get_weights())
    features, label = next(iter(read(m, "eval", batch_size=64, shuffle=False)))
    carriers = features["carrier"].numpy()
    carriers[:8] = [b"ZZ", b"QQ", b"XX", b"no such", b"", b"A", b"B", b"C"]
    features = {**features, "carrier": tf.constant(carriers)}
    looked_up, _ = next(iter(tf.data.Dataset.from_tensors((features, label)).apply(categorical_ids(m.schema, stats))))
    assert looked_up["carrier"].dtype == tf.int64 and len(set(looked_up["carrier"][:8].numpy()) & {0, 1, 2}) >= 2
    np.testing.assert_allclose(np.asarray(ids(looked_up)), np.asarray(strings(features)), rtol=1e-6, atol=1e-7)
