import dataclasses
import numpy as np
import pytest

from tfstream.transforms.schema import Feature, Label
from tfstream.transforms.validation import FeatureRule, LabelRule, RowError, RowRules, convert_row


def _rules(*features, label=None, na=("", "NA")):
    label = label or LabelRule(Label("late", "binary", ("no", "yes")), "arr_delay", threshold=15.0)
    return RowRules(tuple(features), label, na)


def num(name, dtype="float32", on_missing="error", default=None, columns=None):
    return FeatureRule(Feature(name, "numeric", dtype), columns or (name,), on_missing, default)


def test_good_row_is_typed():
    rules = _rules(num("dep_delay"), num("month", "int64"),
                   FeatureRule(Feature("carrier", "categorical", "string"), ("carrier",)))
    row, dropped = convert_row({"dep_delay": "-3", "month": "12", "carrier": "UA", "arr_delay": "16"}, rules)
    assert dropped is None
    assert row == {"dep_delay": -3.0, "month": 12, "carrier": "UA", "late": 1}


def test_threshold_is_strict():
    row, _ = convert_row({"x": "1", "arr_delay": "15"}, _rules(num("x")))
    assert row["late"] == 0


def test_missing_value_policies():
    raw = {"x": "NA", "arr_delay": "1"}
    row, dropped = convert_row(raw, _rules(num("x", on_missing="drop")))
    assert row is None and dropped == "missing:x"
    row, _ = convert_row(raw, _rules(num("x", on_missing="default", default=0.5)))
    assert row["x"] == 0.5
    with pytest.raises(RowError, match=r"column 'x': missing value for feature 'x'; set `on_missing: drop`"):
        convert_row(raw, _rules(num("x")))


def test_missing_label():
    with pytest.raises(RowError, match="column 'arr_delay': missing label; set `label.on_missing: drop`"):
        convert_row({"x": "1", "arr_delay": ""}, _rules(num("x")))
    label = LabelRule(Label("late", "binary", ("no", "yes")), "arr_delay", threshold=15.0, on_missing="drop")
    assert convert_row({"x": "1", "arr_delay": None}, _rules(num("x"), label=label)) == (None, "missing_label:arr_delay")


@pytest.mark.parametrize(
    "value, dtype, message",
    [
        ("abc", "float32", "column 'x': expected a number, got 'abc'"),
        ("inf", "float32", "column 'x': expected a finite number, got 'inf'"),
        ("1.5", "int64", "column 'x': expected an integer, got '1.5'"),
    ],
)
def test_unparseable_values(value, dtype, message):
    with pytest.raises(RowError, match=message) as info:
        convert_row({"x": value, "arr_delay": "1"}, _rules(num("x", dtype)))
    assert info.value.column == "x"


def test_labels_outside_declared_classes():
    rules = _rules(num("x"), label=LabelRule(Label("d", "multiclass", tuple("0123")), "y"))
    assert convert_row({"x": 1, "y": 3}, rules)[0]["d"] == 3
    with pytest.raises(RowError, match=r"column 'y': label 4 is outside the declared classes 0..3"):
        convert_row({"x": 1, "y": 4}, rules)
    named = _rules(num("x"), label=LabelRule(Label("d", "multiclass", ("cat", "dog")), "y", raw_classes=("cat", "dog")))
    assert convert_row({"x": 1, "y": "dog"}, named)[0]["d"] == 1
    with pytest.raises(RowError, match=r"label 'cow' is not one of the declared classes \['cat', 'dog'\]"):
        convert_row({"x": 1, "y": "cow"}, named)


def test_vector_from_several_columns():
    rules = _rules(FeatureRule(Feature("times", "numeric", "int64", (2,)), ("dep", "arr")))
    assert convert_row({"dep": "517", "arr": "830", "arr_delay": "0"}, rules)[0]["times"] == [517, 830]


def test_sequences():
    seq = FeatureRule(Feature("mfcc", "sequence", "float32", (3,)), ("X",))
    rules = _rules(seq, label=LabelRule(Label("d", "multiclass", ("0", "1")), "y"))
    row, _ = convert_row({"X": np.ones((4, 3)), "y": 1}, rules)
    assert row["mfcc"].shape == (4, 3) and row["mfcc"].dtype == np.float32
    with pytest.raises(RowError, match=r"column 'X': the sequence is empty"):
        convert_row({"X": np.ones((0, 3)), "y": 1}, rules)
    with pytest.raises(RowError, match=r"column 'X': expected a sequence of shape \(steps, 3\), got shape \(4, 2\)"):
        convert_row({"X": np.ones((4, 2)), "y": 1}, rules)
    with pytest.raises(RowError, match="column 'X': the sequence holds NaN or inf"):
        convert_row({"X": np.full((2, 3), np.nan), "y": 1}, rules)


@pytest.mark.parametrize(
    "value, message",
    [
        (1.6, "column 'n': expected an integer, got 1.6"),
        (np.float64(2.5), "column 'n': expected an integer, got 2.5"),
        ("1e20", "column 'n': '1e20' is outside the int64 range"),
        (2**63, "is outside the int64 range"),
        (True, "column 'n': expected an integer, got True"),
    ],
)
def test_ints_are_never_truncated(value, message):
    with pytest.raises(RowError, match=message.replace("(", r"\(")):
        convert_row({"n": value, "arr_delay": "1"}, _rules(num("n", "int64")))


def test_integral_floats_are_ints():
    for value in (3.0, np.float32(3.0), "3.0", "3", np.int16(3)):
        assert convert_row({"n": value, "arr_delay": "1"}, _rules(num("n", "int64")))[0]["n"] == 3


def test_float32_overflow_is_an_error():
    with pytest.raises(RowError, match=r"column 'x': '1e300' is outside the float32 range"):
        convert_row({"x": "1e300", "arr_delay": "1"}, _rules(num("x")))


def test_float_class_indices_are_not_truncated():
    rules = _rules(num("x"), label=LabelRule(Label("d", "multiclass", tuple("0123")), "y"))
    with pytest.raises(RowError, match="column 'y': expected an integer, got 1.4"):
        convert_row({"x": 1, "y": 1.4}, rules)


def test_missing_value_to_impute_is_left_as_none_and_noted():
    from tfstream.transforms.schema import Schema
    from tfstream.transforms.validation import NOTES, impute_row

    rules = _rules(num("x", on_missing="impute"), num("n", "int64", on_missing="impute"))
    row, dropped = convert_row({"x": "NA", "n": "", "arr_delay": "1"}, rules)
    assert dropped is None and row["x"] is None and row["n"] is None and row[NOTES] == {"missing": ("x", "n")}
    schema = Schema((Feature("x", "numeric", "float32"), Feature("n", "numeric", "int64")), rules.label.label)
    filled = impute_row(row, {"x": np.float64(2.5), "n": np.float64(3.6)}, schema)
    assert filled == {"x": 2.5, "n": 4, "late": 0}  # an int gets the rounded mean; the notes are gone


@pytest.mark.parametrize("policy, expected", [
    ("drop", (None, "not_finite:x")),
    ("impute", ({"x": None, "late": 0, "__notes__": {"non_finite": ("x",)}}, None)),
])
def test_non_finite_policies(policy, expected):
    rule = FeatureRule(Feature("x", "numeric", "float32"), ("x",), on_nan=policy)
    for value in ("inf", "-inf", float("inf"), np.float32("-inf")):
        assert convert_row({"x": value, "arr_delay": "1"}, _rules(rule)) == expected
    with pytest.raises(RowError, match=r"column 'x': expected a finite number, got 'inf'; set `on_nan: drop` or "
                                       r"`on_nan: impute` on the feature to accept such rows"):
        convert_row({"x": "inf", "arr_delay": "1"}, _rules(num("x")))


def _seq(**kw):
    return FeatureRule(Feature("s", "sequence", "float32", (2,)), ("s",), **kw)


def test_sequence_length_and_nan_policies():
    from tfstream.transforms.schema import Schema
    from tfstream.transforms.validation import NOTES, impute_row

    long = np.arange(10, dtype=np.float32).reshape(5, 2)
    row, _ = convert_row({"s": long, "arr_delay": "1"}, _rules(_seq(max_length=3)))
    np.testing.assert_array_equal(row["s"], long[:3])
    assert row[NOTES] == {"truncated": ("s",)}
    assert convert_row({"s": long, "arr_delay": "1"}, _rules(_seq(max_length=3, on_too_long="drop"))) == \
        (None, "too_long:s")
    with pytest.raises(RowError, match=r"column 's': the sequence has 5 steps, more than max_length 4; set "
                                       r"`on_too_long: truncate` or `drop` to accept such rows") as e:
        convert_row({"s": long, "arr_delay": "1"}, _rules(_seq(max_length=4, on_too_long="error")))
    assert e.value.reason == "too_long"
    holey = long.copy()
    holey[1, 0] = np.nan
    with pytest.raises(RowError, match=r"column 's': the sequence holds NaN or inf; set `on_nan: drop`"):
        convert_row({"s": holey, "arr_delay": "1"}, _rules(_seq()))
    assert convert_row({"s": holey, "arr_delay": "1"}, _rules(_seq(on_nan="drop"))) == (None, "not_finite:s")
    row, _ = convert_row({"s": holey, "arr_delay": "1"}, _rules(_seq(on_nan="impute")))
    schema = Schema((Feature("s", "sequence", "float32", (2,)),), Label("late", "binary", ("no", "yes")))
    filled = impute_row(row, {"s": np.array([-1.0, -2.0])}, schema)
    np.testing.assert_array_equal(filled["s"][1], [-1.0, 3.0])  # per-step mean, for the NaN component only
    assert NOTES not in filled


@pytest.mark.parametrize("feature", [
    FeatureRule(Feature("x", "numeric", "float32"), ("x",), on_missing="drop"),
    FeatureRule(Feature("x", "numeric", "int64"), ("x",), on_missing="drop"),
    FeatureRule(Feature("x", "categorical", "string"), ("x",), on_missing="drop"),
])
def test_nan_in_a_binary_source_is_a_missing_value(feature):
    """npz and Parquet have no NA strings: a NaN is their missing marker (as in pandas),
    whatever the feature's type; it never becomes the token 'nan'."""
    for nan in (float("nan"), np.float64("nan"), np.float32("nan")):
        assert convert_row({"x": nan, "arr_delay": "1"}, _rules(feature)) == (None, "missing:x")
    label = LabelRule(Label("y", "regression"), "y", on_missing="drop")
    assert convert_row({"x": 1.0, "y": np.nan}, _rules(feature, label=label)) == (None, "missing_label:y")


def test_a_label_that_is_not_finite_is_rejected_without_a_feature_hint():
    label = LabelRule(Label("y", "regression"), "y")
    with pytest.raises(RowError, match=r"^column 'y': expected a finite number, got 'inf'$"):
        convert_row({"x": "1", "y": "inf"}, _rules(num("x"), label=label))


@pytest.mark.parametrize("raw, reason, message", [
    ({"s": [[1.0, 2.0], [3.0]]}, "bad_shape",  # a ragged Parquet list<list<float>>
     r"^column 's': step 1 holds one value, but the feature declares `dim: 2` \(values per step\); every step of a "
     r"sequence needs 2$"),
    ({"s": [[1.0, 2.0], [3.0, 4.0, 5.0]]}, "bad_shape", r"^column 's': step 1 holds 3 values, but the feature"),
    ({"s": [[1.0, 2.0], 3.0]}, "bad_shape", r"^column 's': step 1 holds one value"),
    ({"s": [["a", "b"]]}, "bad_value", r"column 's': not a sequence of numbers \(could not convert string to float"),
])
def test_malformed_sequences_are_rejected_not_crashes(raw, reason, message):
    with pytest.raises(RowError, match=message) as e:
        convert_row({**raw, "arr_delay": "1"}, _rules(_seq()))
    assert e.value.reason == reason


def test_a_sequence_from_one_column_per_channel():
    """A long-format table's steps: channels side by side; a missing cell (an NA string)
    is NaN, for the `on_nan` rule."""
    rule = FeatureRule(Feature("s", "sequence", "float32", (2,)), ("a", "b"), on_nan="impute")
    row, _ = convert_row({"a": ["1", "2", "NA"], "b": ["3", "4", "5"], "arr_delay": "1"}, _rules(rule))
    np.testing.assert_array_equal(row["s"], np.array([[1, 3], [2, 4], [np.nan, 5]], np.float32))
    assert row["__notes__"] == {"non_finite": ("s",)}
    with pytest.raises(RowError, match=r"^column 'a': the sequence holds NaN or inf; set `on_nan: drop`"):
        convert_row({"a": ["1", ""], "b": ["3", "4"], "arr_delay": "1"}, _rules(dataclasses.replace(rule,
                                                                                                    on_nan="error")))


def test_undecodable_text_is_rejected():
    rule = FeatureRule(Feature("c", "categorical", "string"), ("c",))
    with pytest.raises(RowError, match=r"column 'c': b'\\xff\\xfe' is not UTF-8 text"):
        convert_row({"c": b"\xff\xfe", "arr_delay": "1"}, _rules(rule))


def test_a_label_outside_the_transforms_domain_is_rejected():
    label = LabelRule(Label("price", "regression", transform="log1p"), "price")
    assert convert_row({"x": "1", "price": "-0.5"}, _rules(num("x"), label=label)) == ({"x": 1.0, "price": -0.5}, None)
    for raw in ("-1", "-3.5", -1.0):
        with pytest.raises(RowError, match=r"^column 'price': label -?[\d.]+ is outside label.transform log1p's "
                                           r"domain \(log1p\(y\) needs y > -1\); fix or remove such rows, or set "
                                           r"`label.transform: none`$") as e:
            convert_row({"x": "1", "price": raw}, _rules(num("x"), label=label))
        assert e.value.reason == "out_of_domain" and e.value.column == "price"
    untransformed = LabelRule(Label("price", "regression"), "price")
    assert convert_row({"x": "1", "price": "-3"}, _rules(num("x"), label=untransformed))[0]["price"] == -3.0


def test_integer_classes_match_text_integers_and_integral_floats():
    """``classes: [1, 2, 3]`` (a YAML list of integers) is held as text: a CSV's "2", an
    npz's 2 or 2.0, and a Parquet int all find class "2"."""
    label = LabelRule(Label("y", "multiclass", ("1", "2", "3")), "y", raw_classes=("1", "2", "3"))
    for raw in ("2", 2, np.int64(2), 2.0, np.float32(2.0), np.float64(2.0)):
        assert convert_row({"x": "1", "y": raw}, _rules(num("x"), label=label))[0]["y"] == 1, raw
    for raw, shown in (("2.0", "'2.0'"), (2.5, "'2.5'"), (4, "'4'")):
        with pytest.raises(RowError, match=rf"^column 'y': label {shown} is not one of the declared classes "
                                           rf"\['1', '2', '3'\]$"):
            convert_row({"x": "1", "y": raw}, _rules(num("x"), label=label))
