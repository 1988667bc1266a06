"""Turn one raw source row into a validated, typed row, or say why it cannot be.

Plain functions, no I/O: the Beam pipeline calls `convert_row` on every row, and tests
call it directly. A raw row maps source column names to what the source reader gave:
strings (CSV), Python values (Parquet), NumPy values (npz), or None.

Outcomes:
* a typed row (feature name / label name → value) ready for `transforms.codecs`;
* a drop, with a reason, when a missing value meets ``on_missing: drop`` (counted by the
  pipeline, never silent);
* a `RowError` for anything else (unparseable value, missing value with
  ``on_missing: error``, label outside the declared classes, ...). The pipeline adds the
  file and the row number to its message.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional, Union

import numpy as np

from tfstream.transforms.schema import Feature, Label


class RowError(ValueError):
    """A row that breaks a rule. ``column`` and ``reason`` let callers count by kind."""

    def __init__(self, column: str, reason: str, message: str):
        super().__init__(message)
        self.column = column
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class FeatureRule:
    """How one stored feature is read from a raw row."""

    feature: Feature
    columns: tuple[str, ...]
    on_missing: str = "error"  # error | drop | default
    default: Optional[Union[float, int, str]] = None


@dataclasses.dataclass(frozen=True)
class LabelRule:
    """How the label is read: a threshold on a number, a class name, an index, or a number."""

    label: Label
    column: str
    threshold: Optional[float] = None
    raw_classes: tuple[str, ...] = ()
    on_missing: str = "error"  # error | drop


# Strings that mean "no value" in text sources, unless a config says otherwise.
DEFAULT_NA_VALUES = ("", "NA", "NaN", "nan", "null", "NULL")


@dataclasses.dataclass(frozen=True)
class RowRules:
    features: tuple[FeatureRule, ...]
    label: LabelRule
    na_values: tuple[str, ...] = DEFAULT_NA_VALUES

    def columns(self) -> list[str]:
        """The source columns these rules read, in order, without repeats."""
        out: list[str] = []
        for rule in self.features:
            out.extend(c for c in rule.columns if c not in out)
        if self.label.column not in out:
            out.append(self.label.column)
        return out


class _Drop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _is_missing(value: Any, na_values: tuple[str, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value in na_values
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)
    return False


def _show(value: Any) -> str:
    """A value as it appears in messages: NumPy scalars as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _to_float(value: Any, column: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise RowError(column, "not_a_number", f"column {column!r}: expected a number, got {_show(value)}") from None
    if not math.isfinite(out):
        raise RowError(column, "not_finite", f"column {column!r}: expected a finite number, got {_show(value)}")
    if abs(out) > _FLOAT32_MAX:  # stored as float32: it would become inf
        raise RowError(column, "out_of_range",
                       f"column {column!r}: {_show(value)} is outside the float32 range (±{_FLOAT32_MAX:.4g})")
    return out


def _to_int(value: Any, column: str) -> int:
    def not_an_integer():
        return RowError(column, "not_an_integer", f"column {column!r}: expected an integer, got {_show(value)}")

    if isinstance(value, (bool, np.bool_)):
        raise not_an_integer()
    if isinstance(value, (int, np.integer)):
        out = int(value)
    else:
        try:
            out = int(value) if isinstance(value, str) else None  # exact, also past 2**53
        except ValueError:
            out = None
        if out is None:  # "3.0" or 3.0 (npz, Parquet): integral floats only, never truncated
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise not_an_integer() from None
            if not number.is_integer():  # also NaN and inf
                raise not_an_integer()
            out = int(number)
    if not _INT64_MIN <= out <= _INT64_MAX:
        raise RowError(column, "out_of_range", f"column {column!r}: {_show(value)} is outside the int64 range")
    return out


def _scalar(value: Any, feature: Feature, column: str) -> Any:
    if feature.dtype == "string":
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return str(value)
    return _to_float(value, column) if feature.dtype == "float32" else _to_int(value, column)


def _missing(rule: FeatureRule, column: str, what: str) -> Any:
    if rule.on_missing == "drop":
        raise _Drop(f"missing:{column}")
    if rule.on_missing == "default":
        return rule.default
    raise RowError(
        column, "missing",
        f"column {column!r}: {what} for feature {rule.feature.name!r}; set `on_missing: drop` "
        f"or `on_missing: default` on that feature to accept such rows",
    )


def _convert_feature(raw: Mapping[str, Any], rule: FeatureRule, na_values: tuple[str, ...]) -> Any:
    f = rule.feature
    if f.kind == "sequence":
        column = rule.columns[0]
        value = raw[column]
        if value is None:
            return _missing(rule, column, "no sequence")
        arr = np.asarray(value, dtype=np.float32)
        if arr.ndim == 1 and f.size == 1:
            arr = arr.reshape(-1, 1)
        if arr.ndim != 2 or arr.shape[1] != f.size:
            raise RowError(column, "bad_shape",
                           f"column {column!r}: expected a sequence of shape (steps, {f.size}), "
                           f"got shape {arr.shape}")
        if arr.shape[0] == 0:
            raise RowError(column, "empty_sequence", f"column {column!r}: the sequence is empty")
        if not np.isfinite(arr).all():
            raise RowError(column, "not_finite", f"column {column!r}: the sequence holds NaN or inf")
        return arr
    def item(value, column):
        return _missing(rule, column, "missing value") if _is_missing(value, na_values) else _scalar(value, f, column)

    if len(rule.columns) > 1:  # a fixed vector from several scalar columns
        return [item(raw[column], column) for column in rule.columns]
    column = rule.columns[0]
    value = raw[column]
    if f.shape:  # a fixed vector held in one column (a Parquet list, a 2-D npz array)
        if value is None:
            return [_missing(rule, column, "missing value")] * f.size
        items = list(np.asarray(value).reshape(-1)) if not isinstance(value, (list, tuple)) else list(value)
        if len(items) != f.size:
            raise RowError(column, "bad_shape",
                           f"column {column!r}: expected {f.size} values, got {len(items)}")
        return [item(v, column) for v in items]
    return item(value, column)


def _convert_label(raw: Mapping[str, Any], rule: LabelRule, na_values: tuple[str, ...]) -> Any:
    column, label = rule.column, rule.label
    value = raw[column]
    if _is_missing(value, na_values):
        if rule.on_missing == "drop":
            raise _Drop(f"missing_label:{column}")
        raise RowError(column, "missing_label",
                       f"column {column!r}: missing label; set `label.on_missing: drop` to drop such rows")
    if label.task == "regression":
        return _to_float(value, column)
    if rule.threshold is not None:
        return int(_to_float(value, column) > rule.threshold)
    if rule.raw_classes:
        key = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        try:
            return rule.raw_classes.index(key)
        except ValueError:
            raise RowError(column, "unknown_class",
                           f"column {column!r}: label {key!r} is not one of the declared classes "
                           f"{list(rule.raw_classes)}") from None
    index = _to_int(value, column)
    if not 0 <= index < label.num_classes:
        raise RowError(column, "unknown_class",
                       f"column {column!r}: label {index} is outside the declared classes "
                       f"0..{label.num_classes - 1}")
    return index


def convert_row(raw: Mapping[str, Any], rules: RowRules) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """Validate and type one raw row.

    Args:
        raw: source column name → raw value; must hold every column in `rules.columns()`.
        rules: the row rules of the job (`JobConfig.row_rules()`).

    Returns:
        ``(row, None)`` for a good row, or ``(None, reason)`` for a row dropped by an
        ``on_missing: drop`` rule.

    Raises:
        RowError: the row breaks a rule; the message names the column and the fix.

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> rules = RowRules((FeatureRule(Feature("x", "numeric", "float32"), ("x",)),),
        ...                  LabelRule(Label("y", "regression"), "y"))
        >>> convert_row({"x": "1.5", "y": "2"}, rules)
        ({'x': 1.5, 'y': 2.0}, None)
    """
    try:
        row = {rule.feature.name: _convert_feature(raw, rule, rules.na_values) for rule in rules.features}
        row[rules.label.label.name] = _convert_label(raw, rules.label, rules.na_values)
    except _Drop as drop:
        return None, drop.reason
    return row, None
