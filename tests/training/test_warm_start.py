"""Warm start: vocabularies extended, never reordered; weights copied by layer."""

import numpy as np
import pytest

from tfstream.training.warm_start import IncompatibleModel, compatibility, extend_vocabularies, transfer_weights


def _data(vocab, schema="s", model=None, oov=1):
    return {"schema": schema, "options": {"config": {"model": model or {"type": "dense"}}},
            "splits": {"train": {"statistics": {"features": {"c": {"vocabulary": vocab, "oov_buckets": oov}}}}}}


def test_vocabularies_keep_the_champions_ids_and_respect_the_limit():
    champion = _data([["a", 5], ["b", 4]])
    window = _data([["c", 9], ["a", 3], ["d", 2], ["e", 1]])
    out = extend_vocabularies(window, champion, "train", {"c": 3})
    assert out["splits"]["train"]["statistics"]["features"]["c"]["vocabulary"] == [["a", 3], ["b", 0], ["c", 9]]
    assert window["splits"]["train"]["statistics"]["features"]["c"]["vocabulary"][0] == ["c", 9]  # not modified


def test_compatibility_names_what_differs():
    assert compatibility(_data([]), _data([])) is None
    assert "schema differs" in compatibility(_data([]), _data([], schema="t"))
    assert "model: section differs" in compatibility(_data([]), _data([], model={"type": "lstm"}))
    assert "model: section differs" in compatibility(_data([]), _data([]), champion_model={"dropout": 0.1},
                                                     model={"dropout": 0.2})
    assert "oov_buckets differs" in compatibility(_data([]), _data([], oov=2))


def _model(vocab_size, units=4):
    import keras

    x = keras.Input(shape=(1,), dtype="int64")
    e = keras.layers.Flatten()(keras.layers.Embedding(vocab_size, 3)(x))
    return keras.Model(x, keras.layers.Dense(1)(keras.layers.Dense(units)(e)))


@pytest.mark.slow
def test_weights_transfer_and_an_embedding_grows_row_by_row():
    old, new = _model(5), _model(7)
    copied = transfer_weights(new, old)
    assert copied == 5  # the embedding, two kernels, two biases
    emb_old, emb_new = old.layers[1].get_weights()[0], new.layers[1].get_weights()[0]
    np.testing.assert_array_equal(emb_new[:5], emb_old)
    np.testing.assert_array_equal(new.layers[4].get_weights()[0], old.layers[4].get_weights()[0])
    with pytest.raises(IncompatibleModel, match="has shape"):
        transfer_weights(_model(7, units=8), old)
