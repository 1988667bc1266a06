import json

import numpy as np
import pytest
import tensorflow as tf

from tfstream.transforms.codecs import decode_example, encode_example, parse_batch
from tfstream.transforms.schema import Feature, Label, Schema


@pytest.fixture
def schema():
    return Schema(
        (
            Feature("x", "numeric", "float32"),
            Feature("n", "numeric", "int64"),
            Feature("v", "numeric", "float32", (3,)),
            Feature("c", "categorical", "string"),
            Feature("s", "sequence", "float32", (2,)),
        ),
        Label("y", "multiclass", ("a", "b", "c")),
    )


def _rows():
    return [
        {"x": 1.5, "n": 7, "v": [1.0, 2.0, 3.0], "c": "UA", "s": np.arange(6, dtype=np.float32).reshape(3, 2), "y": 2},
        {"x": -2.0, "n": -1, "v": [0.0, 0.5, -1.0], "c": "é", "s": np.ones((1, 2), np.float32), "y": 0},
    ]


def test_round_trip_without_tensorflow_ops(schema):
    for row in _rows():
        back = decode_example(encode_example(row, schema), schema)
        assert back["x"] == pytest.approx(row["x"])
        assert back["n"] == row["n"]
        np.testing.assert_allclose(back["v"], row["v"])
        assert back["c"] == row["c"]
        np.testing.assert_array_equal(back["s"], row["s"])
        assert back["s_length"] == len(row["s"])
        assert back["y"] == row["y"]


def test_vectorized_parse_of_a_batch(schema):
    rows = _rows()
    features, label = parse_batch(tf.constant([encode_example(r, schema) for r in rows]), schema)
    np.testing.assert_allclose(features["x"].numpy(), [1.5, -2.0])
    np.testing.assert_array_equal(features["n"].numpy(), [7, -1])
    assert features["v"].shape == (2, 3)
    assert [c.decode() for c in features["c"].numpy()] == ["UA", "é"]
    assert isinstance(features["s"], tf.RaggedTensor)
    assert features["s"].shape.as_list() == [2, None, 2]
    np.testing.assert_array_equal(features["s"].row_lengths().numpy(), [3, 1])
    np.testing.assert_array_equal(features["s_length"].numpy(), [3, 1])
    np.testing.assert_array_equal(features["s"][0].numpy(), rows[0]["s"])
    np.testing.assert_array_equal(label.numpy(), [2, 0])


def test_wrong_sizes_are_rejected(schema):
    row = dict(_rows()[0], v=[1.0, 2.0])
    with pytest.raises(ValueError, match="feature 'v': expected 3 value"):
        encode_example(row, schema)
    row = dict(_rows()[0], s=np.arange(5, dtype=np.float32))
    with pytest.raises(ValueError, match="5 values is not a whole number of steps of 2"):
        encode_example(row, schema)


def test_encoding_is_byte_stable_across_processes(schema, tmp_path):
    """Map order in a serialized proto follows the process's hash seed unless serialization
    is deterministic; the write-time shuffle is keyed by the record bytes."""
    import os
    import subprocess
    import sys

    code = (
        "import numpy as np, sys\n"
        "from tfstream.transforms.codecs import encode_example\n"
        "from tfstream.transforms.schema import Schema\n"
        "import json\n"
        f"schema = Schema.from_json(json.loads({json.dumps(json.dumps(schema.to_json()))}))\n"
        "row = {'x': 1.5, 'n': 7, 'v': [1.0, 2.0, 3.0], 'c': 'UA', 's': np.ones((2, 2), np.float32), 'y': 2}\n"
        "sys.stdout.write(encode_example(row, schema).hex())\n"
    )
    outs = set()
    for seed in ("1", "2", "3"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        outs.add(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                                check=True).stdout)
    assert len(outs) == 1


def test_same_bytes_as_tensorflows_own_example(schema):
    from tensorflow.core.example import example_pb2

    for row in _rows():
        ours = encode_example(row, schema)
        theirs = example_pb2.Example.FromString(ours)
        assert theirs.SerializeToString(deterministic=True) == ours
        assert set(theirs.features.feature) == {"x", "n", "v", "c", "s", "s_length", "y"}
        assert list(theirs.features.feature["s"].float_list.value) == row["s"].reshape(-1).tolist()


def test_writing_needs_no_tensorflow():
    import subprocess
    import sys

    code = ("import sys\n"
            "from tfstream.transforms.codecs import encode_example\n"
            "from tfstream.transforms.schema import Feature, Label, Schema\n"
            "s = Schema((Feature('x', 'numeric', 'float32'),), Label('y', 'regression'))\n"
            "encode_example({'x': 1.0, 'y': 2.0}, s)\n"
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
