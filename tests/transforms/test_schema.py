import pytest
import tensorflow as tf

from tfstream.transforms.schema import Feature, Label, Schema, format_parse_spec, length_key


def _schema():
    return Schema(
        (
            Feature("x", "numeric", "float32"),
            Feature("v", "numeric", "int64", (3,)),
            Feature("c", "categorical", "string"),
            Feature("s", "sequence", "float32", (2,)),
        ),
        Label("y", "multiclass", ("a", "b", "c")),
    )


def test_parse_spec_matches_layout():
    spec = _schema().parse_spec()
    assert spec["x"] == tf.io.FixedLenFeature([], tf.float32)
    assert spec["v"] == tf.io.FixedLenFeature([3], tf.int64)
    assert spec["c"] == tf.io.FixedLenFeature([], tf.string)
    assert isinstance(spec["s"], tf.io.RaggedFeature) and spec["s"].value_key == "s"
    assert spec[length_key("s")] == tf.io.FixedLenFeature([], tf.int64)
    assert spec["y"] == tf.io.FixedLenFeature([], tf.int64)


def test_json_round_trip():
    schema = _schema()
    assert Schema.from_json(schema.to_json()) == schema


def test_printed_spec_is_the_spec():
    schema = _schema()
    printed = eval(format_parse_spec(schema), {"tf": tf})  # the text `tfstream inspect` prints
    assert printed.keys() == schema.parse_spec().keys()
    for key, value in printed.items():
        assert repr(value) == repr(schema.parse_spec()[key])


@pytest.mark.parametrize(
    "args, message",
    [
        (("c", "categorical", "int64"), "a categorical feature is a scalar string"),
        (("x", "numeric", "string"), "a numeric feature needs dtype float32 or int64"),
        (("s", "sequence", "float32", ()), "a sequence feature needs the shape of one step"),
        (("x", "numeric", "float32", (2, 2)), "shape must be () or (k,)"),
        (("x", "tabular", "float32"), "kind must be one of"),
    ],
)
def test_bad_features_are_rejected(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Feature(*args)


def test_record_keys_must_be_distinct():
    with pytest.raises(ValueError, match="the record key 's_length' is used twice"):
        Schema((Feature("s", "sequence", "float32", (2,)), Feature("s_length", "numeric", "int64")),
               Label("y", "regression"))


def test_labels():
    assert Label("y", "binary", ("no", "yes")).dtype == "int64"
    assert Label("y", "regression").dtype == "float32"
    with pytest.raises(ValueError, match="a binary label has 2 classes"):
        Label("y", "binary", ("a", "b", "c"))
