"""The vectorized encoder writes the bytes `encode_example` writes, record for record."""

import numpy as np
import pytest

from tfstream.transforms.codecs import decode_example, encode_example
from tfstream.transforms.example_encoder import (encode_examples, encode_examples_buffer, key_order, rows_to_columns,
                                                  varints)
from tfstream.transforms.schema import Feature, Label, Schema

_EXTREME_INTS = [0, 1, -1, 127, 128, 16383, 16384, 2**31 - 1, -(2**31), 2**53 + 1, 2**62, 2**63 - 1, -(2**63)]
_SPECIAL_FLOATS = [0.0, -0.0, float("nan"), float("inf"), float("-inf"), 1e-45, 3.4028234663852886e38, 1e39,
                   -1e39, 0.1, 1 / 3]
_TEXTS = ["", "a", "UA", "é", "日本語", "x" * 200, "tab\tnew\nline", "\x00"]


def _label(rng, label):
    if label.task == "regression":
        return float(rng.choice(_SPECIAL_FLOATS)) if rng.random() < 0.3 else float(rng.normal())
    return int(rng.integers(0, label.num_classes))


def _value(rng, f):
    def one():
        if f.dtype == "float32":
            return float(rng.choice(_SPECIAL_FLOATS)) if rng.random() < 0.2 else float(rng.normal() * 10.0 ** rng.integers(-5, 6))
        if f.dtype == "int64":
            return int(rng.choice(_EXTREME_INTS)) if rng.random() < 0.3 else int(rng.integers(-10**6, 10**6))
        return str(rng.choice(_TEXTS))

    if f.kind == "sequence":
        steps = int(rng.integers(0, 5))  # 0 steps: validation rejects it, the codec writes it
        values = [one() for _ in range(steps * f.size)]
        if f.dtype == "string":
            return values
        return np.asarray(values, dtype=np.float64 if f.dtype == "float32" else np.int64).reshape(steps, f.size)
    if f.shape:
        return [one() for _ in range(f.size)]
    return one()


def _check(rows, schema):
    expected = [encode_example(row, schema) for row in rows]
    got = encode_examples(rows_to_columns(rows, schema), schema, len(rows))
    for i, (a, b) in enumerate(zip(got, expected)):
        assert a == b, f"row {i}: {rows[i]}\nours:      {a!r}\nencode_ex: {b!r}"
    assert len(got) == len(expected)


SCHEMAS = {
    "every_kind": Schema(
        (Feature("x", "numeric", "float32"), Feature("n", "numeric", "int64"),
         Feature("v", "numeric", "float32", (3,)), Feature("iv", "numeric", "int64", (4,)),
         Feature("c", "categorical", "string"), Feature("s", "sequence", "float32", (2,)),
         Feature("si", "sequence", "int64", (1,)), Feature("s3", "sequence", "float32", (3,))),
        Label("y", "multiclass", ("a", "b", "c"))),
    "prefix_keys": Schema(  # map order is not byte order: "a_length" comes before "a"
        (Feature("a", "sequence", "float32", (1,)), Feature("ab", "numeric", "float32"),
         Feature("B", "categorical", "string"), Feature("a_l", "numeric", "int64")),
        Label("abc", "regression")),
    "binary": Schema((Feature("x", "numeric", "float32", (10,)),), Label("y", "binary", ("no", "yes"))),
    "wide_varint_lengths": Schema((Feature("w", "numeric", "float32", (40,)), Feature("t", "categorical", "string")),
                                  Label("r", "regression")),
}


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_random_rows_are_byte_identical(name):
    schema = SCHEMAS[name]
    rng = np.random.default_rng(sum(map(ord, name)))
    rows = [{**{f.name: _value(rng, f) for f in schema.features}, schema.label.name: _label(rng, schema.label)}
            for _ in range(400)]
    _check(rows, schema)
    _check(rows[:1], schema)


def test_one_varying_piece_among_equal_length_records():
    schema = SCHEMAS["every_kind"]
    rng = np.random.default_rng(3)
    rows = [{**{f.name: _value(rng, f) for f in schema.features}, "y": 1} for _ in range(50)]
    for row in rows:  # every list the same length: the grid path
        row["s"], row["si"], row["s3"] = np.ones((2, 2)), np.arange(3).reshape(3, 1), np.zeros((1, 3))
        row["c"], row["n"], row["iv"] = "UA", 5, [1, 2, 3, 4]
    _check(rows, schema)
    rows[7]["c"] = "longer text"  # one record longer: the scatter path
    _check(rows, schema)


def test_long_records_take_multi_byte_lengths():
    schema = Schema((Feature("s", "sequence", "float32", (8,)), Feature("c", "categorical", "string")),
                    Label("y", "binary", ("0", "1")))
    rows = [{"s": np.full((steps, 8), 0.5), "c": "z" * size, "y": steps % 2}
            for steps, size in [(0, 0), (1, 127), (4, 128), (600, 20000), (5000, 3)]]
    _check(rows, schema)


def test_arrays_in_their_own_dtypes_as_write_arrays_passes_them():
    schema = SCHEMAS["binary"]
    rng = np.random.default_rng(0)
    X = rng.random((1000, 10), dtype=np.float32)
    X[3, 4], X[5, 0], X[6, 1] = -0.0, np.float32(np.finfo(np.float32).max), np.float32(1e-45)
    y = rng.integers(0, 2, 1000)
    got = encode_examples({"x": X, "y": y}, schema, 1000)
    assert got == [encode_example({"x": X[i].tolist(), "y": int(y[i])}, schema) for i in range(1000)]
    buffer, offsets = encode_examples_buffer({"x": X, "y": y.astype(np.int8)}, schema, 1000)
    assert [buffer[a:b].tobytes() for a, b in zip(offsets[:-1], offsets[1:])] == got
    seq = Schema((Feature("s", "sequence", "float32", (3,)),), Label("y", "binary", ("0", "1")))
    cube = rng.random((4, 5, 3)).astype(np.float32)
    assert encode_examples({"s": cube, "y": y[:4]}, seq, 4) == [
        encode_example({"s": cube[i], "y": int(y[i])}, seq) for i in range(4)]


def test_an_empty_batch():
    assert encode_examples({"x": np.zeros((0, 10)), "y": np.zeros(0)}, SCHEMAS["binary"], 0) == []


def test_key_order_is_the_runtimes():
    assert key_order(("a", "a_length", "b")) == ("a_length", "a", "b")
    assert key_order(("é", "z", "B")) == ("B", "z", "é")


def test_varints_as_protobuf_writes_them():
    flat, lengths = varints(np.array(_EXTREME_INTS))
    from tfstream.transforms.example_proto import Example

    e = Example()
    e.features.feature["k"].int64_list.value.extend(_EXTREME_INTS)
    assert bytes(flat) in e.SerializeToString()
    assert lengths.tolist() == [1, 1, 10, 1, 2, 2, 3, 5, 10, 8, 9, 9, 10]


def test_a_ragged_sequence_is_refused():
    seq = Schema((Feature("s", "sequence", "float32", (3,)),), Label("y", "binary", ("0", "1")))
    with pytest.raises(ValueError, match="row 1: 4 values is not a whole number of steps of 3"):
        encode_examples({"s": [np.ones(3), np.ones(4)], "y": np.array([0, 1])}, seq, 2)


def _validated(config, chunks):
    from tfstream.transforms.validation import NOTES, convert_row

    rows = []
    for _, _, chunk in chunks:
        keys = list(chunk)
        for values in zip(*(chunk[c] for c in keys)):
            row, _ = convert_row(dict(zip(keys, values)), config.row_rules())
            if row is not None and NOTES not in row:
                rows.append(row)
    return rows


def test_real_flights_rows(flights_csv, make_job):
    from tfstream.pipelines.write.sources import read_chunks

    config = make_job("flights_dense.yaml", source={"path": flights_csv})
    rows = _validated(config, read_chunks(flights_csv, source=config.source, columns=config.source_columns()))
    assert len(rows) > 5000
    _check(rows, config.schema())
    assert decode_example(encode_examples(rows_to_columns(rows[:1], config.schema()), config.schema(), 1)[0],
                          config.schema())[config.schema().label.name] == rows[0][config.schema().label.name]


def test_real_digits_rows(digits_npz, make_job):
    from tfstream.pipelines.write.sources import read_chunks

    config = make_job("digits_lstm.yaml", source={"path": digits_npz})
    rows = _validated(config, read_chunks(digits_npz, source=config.source, columns=config.source_columns(),
                                            sequence_columns=config.sequence_columns()))
    assert len(rows) == 600
    _check(rows, config.schema())
