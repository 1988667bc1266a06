"""Turn one raw source row into a validated, typed row, or say why it cannot be.

Plain functions, no I/O: the Beam pipeline calls `convert_row` on every row, and tests
call it directly. A raw row maps source column names to what the source reader gave:
strings (CSV), Python values (Parquet), NumPy values (npz), or None.

Outcomes:
* a typed row (feature name / label name → value) ready for `transforms.codecs`, maybe
  with values still to impute (None, or NaN steps in a sequence) and notes under
  `NOTES` saying what was missing, non-finite or truncated (the statistics count them;
  `impute_row` fills the values in and removes the notes);
* a drop, with a reason, when a rule says ``drop`` (the pipeline writes the row to the
  quarantine and counts it: never silent);
* a `RowError` for anything else (unparseable value, missing value with
  ``on_missing: error``, label outside the declared classes, ...): the pipeline rejects
  the row into the quarantine with the file and the row number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Mapping, Optional, Union

import numpy as np

from tfstream.transforms.label_scaling import out_of_domain
from tfstream.transforms.schema import Feature, Label


class RowError(ValueError):
    """A row that breaks a rule. ``column`` and ``reason`` let callers count by kind."""

    def __init__(self, column: str, reason: str, message: str):
        super().__init__(message)
        self.column = column
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class FeatureRule:
    """How one stored feature is read from a raw row (see `pipelines.config.FeatureConfig`
    for the meaning of each policy)."""

    feature: Feature
    columns: tuple[str, ...]
    on_missing: str = "error"  # error | drop | default | impute
    default: Optional[Union[float, int, str]] = None
    on_nan: str = "error"  # error | drop | impute
    max_length: Optional[int] = None
    on_too_long: str = "truncate"  # truncate | drop | error


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


# A typed row may carry notes under this key (never a feature name: those start with a
# letter): {"missing" | "non_finite" | "truncated": (feature names, ...)}.
NOTES = "__notes__"


class _Drop(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def _note(notes: dict, kind: str, name: str) -> None:
    names = notes.setdefault(kind, [])
    if name not in names:
        names.append(name)


def _by_policy(policy: str, column: str, reason: str, message: str, notes: dict, note: str, name: str) -> None:
    """Apply a rule's policy to a value that breaks it: ``error`` rejects the row,
    ``drop`` drops it; any other policy (truncate, impute) keeps it, noted."""
    if policy == "error":
        raise RowError(column, reason, f"column {column!r}: {message}")
    if policy == "drop":
        raise _Drop(f"{reason}:{column}")
    _note(notes, note, name)


def _is_missing(value: Any, na_values: tuple[str, ...]) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value in na_values
    if isinstance(value, (float, np.floating)):
        return math.isnan(value)  # a NaN in a binary source is its missing marker, as in pandas
    return False


def _show(value: Any) -> str:
    """A value as it appears in messages: NumPy scalars as plain Python values."""
    return repr(value.item() if isinstance(value, np.generic) else value)


_FLOAT32_MAX = float(np.finfo(np.float32).max)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class _NonFinite(Exception):
    """A NaN or inf where a rule may accept it (``on_nan``)."""


# Text cells are read as numbers with a strict grammar: ASCII digits, an optional sign, a
# decimal point, an exponent, or a NaN/inf spelling (any case), maybe between ASCII blanks.
# That is what float() and int() read, less their extensions: "1_000", digits of other
# scripts ("٣", "１") and Unicode spaces. A cell that float() reads is in the grammar
# exactly when it is ASCII without "_", a check much cheaper than a regular expression.
_STRICT_HINT = " (numbers are read in ASCII digits 0-9, with an optional sign, '.' and exponent)"


def _strict_text(value: Any) -> Any:
    """``value`` for float()/int(), text decoded; None for text outside the grammar."""
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            return None
    if isinstance(value, str) and not (value.isascii() and "_" not in value):
        return None
    return value


def _not_a_number(value: Any, column: str, text: Any, what: str = "a number", reason: str = "not_a_number") -> RowError:
    hint = ""
    if text is None:  # a number to Python, not in the grammar
        with contextlib.suppress(TypeError, ValueError):
            float(value)
            hint = _STRICT_HINT
    return RowError(column, reason, f"column {column!r}: expected {what}, got {_show(value)}{hint}")


def _to_float(value: Any, column: str, on_nan: Optional[str] = None) -> float:
    """A finite float; ``on_nan`` is the feature's policy for ±inf (None for a label)."""
    text = _strict_text(value)
    try:
        out = float(text)
    except (TypeError, ValueError):
        raise _not_a_number(value, column, text) from None
    if not math.isfinite(out):
        if on_nan not in (None, "error"):
            raise _NonFinite()
        hint = "; set `on_nan: drop` or `on_nan: impute` on the feature to accept such rows" if on_nan else ""
        raise RowError(column, "not_finite", f"column {column!r}: expected a finite number, got {_show(value)}{hint}")
    if abs(out) > _FLOAT32_MAX:  # stored as float32: it would become inf
        raise RowError(column, "out_of_range",
                       f"column {column!r}: {_show(value)} is outside the float32 range (±{_FLOAT32_MAX:.4g})")
    return out


def _to_int(value: Any, column: str) -> int:
    text = _strict_text(value)

    def not_an_integer():
        return _not_a_number(value, column, text, "an integer", "not_an_integer")

    if isinstance(value, (bool, np.bool_)):
        raise not_an_integer()
    if isinstance(value, (int, np.integer)):
        out = int(value)
    else:
        try:
            out = int(text) if isinstance(text, str) else None  # exact, also past 2**53
        except ValueError:
            out = None
        if out is None:  # "3.0" or 3.0 (npz, Parquet): integral floats only, never truncated
            try:
                number = float(text)
            except (TypeError, ValueError):
                raise not_an_integer() from None
            if not number.is_integer():  # also NaN and inf
                raise not_an_integer()
            out = int(number)
    if not _INT64_MIN <= out <= _INT64_MAX:
        raise RowError(column, "out_of_range", f"column {column!r}: {_show(value)} is outside the int64 range")
    return out


def _scalar(value: Any, rule: FeatureRule, column: str, notes: dict) -> Any:
    feature = rule.feature
    if feature.dtype == "string":
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                raise RowError(column, "bad_value", f"column {column!r}: {_show(value)} is not UTF-8 text") from None
        return str(value)
    if feature.dtype != "float32":
        return _to_int(value, column)
    try:
        return _to_float(value, column, rule.on_nan)
    except _NonFinite:
        if rule.on_nan == "drop":
            raise _Drop(f"not_finite:{column}") from None
        _note(notes, "non_finite", feature.name)
        return None  # imputed by `impute_row`


def _missing(rule: FeatureRule, column: str, what: str, notes: dict) -> Any:
    if rule.on_missing == "drop":
        raise _Drop(f"missing:{column}")
    if rule.on_missing in ("default", "impute"):
        _note(notes, "missing", rule.feature.name)
        return rule.default  # None for impute: filled in by `impute_row`
    raise RowError(
        column, "missing",
        f"column {column!r}: {what} for feature {rule.feature.name!r}; set `on_missing: drop`, "
        f"`on_missing: default` or (numbers) `on_missing: impute` on that feature to accept such rows",
    )


def _steps(raw: Mapping[str, Any], rule: FeatureRule) -> Any:
    """A sequence's value: its column's, or, one column per channel (a long-format
    table's steps), the channels side by side, step by step."""
    if len(rule.columns) == 1:
        return raw[rule.columns[0]]
    channels = [raw[c] for c in rule.columns]
    if any(c is None for c in channels):
        return None
    return [list(step) for step in zip(*channels)]


def _check_step_sizes(value: Any, column: str, dim: int) -> None:
    """A list of steps (a Parquet ``list<list<float>>``) whose steps do not all hold
    ``dim`` values: say which step, and how many it holds."""
    if not isinstance(value, (list, tuple)):
        return
    for i, step in enumerate(value):
        size = len(step) if isinstance(step, (list, tuple, np.ndarray)) else None
        if size != dim and not (size is None and dim == 1):
            raise RowError(column, "bad_shape",
                           f"column {column!r}: step {i} holds {'one value' if size in (None, 1) else f'{size} values'}, "
                           f"but the feature declares `dim: {dim}` (values per step); every step of a sequence "
                           f"needs {dim}")


def _na_steps(value: list, na_values: tuple[str, ...]) -> list:
    """Text steps (a CSV's long-format table) with the missing-value strings as None,
    which becomes NaN: a missing step value is the `on_nan` rule's to handle."""
    def cell(v):
        return None if isinstance(v, str) and v in na_values else v
    return [[cell(v) for v in step] if isinstance(step, list) else cell(step) for step in value]


def _convert_sequence(raw: Mapping[str, Any], rule: FeatureRule, notes: dict, na_values: tuple[str, ...] = ()) -> Any:
    f = rule.feature
    column = rule.columns[0]
    value = _steps(raw, rule)
    if value is None:
        return _missing(rule, column, "no sequence", notes)
    if isinstance(value, list) and na_values:
        value = _na_steps(value, na_values)
    if len(rule.columns) == 1 and f.size > 1:
        _check_step_sizes(value, column, f.size)
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as e:  # ragged nested lists, strings
        raise RowError(column, "bad_value", f"column {column!r}: not a sequence of numbers ({e})") from None
    if not (isinstance(value, np.ndarray) and value.dtype.kind in "biuf"):  # text, as the grammar of scalars
        cells = np.asarray(value).reshape(-1).tolist()
        bad = [t for t in cells if isinstance(t, (str, bytes)) and _strict_text(t) is None]
        if bad:
            raise RowError(column, "bad_value", f"column {column!r}: not a sequence of numbers ({_show(bad[0])} is not "
                                                f"a number{_STRICT_HINT})")
    if arr.ndim == 1 and f.size == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != f.size:
        raise RowError(column, "bad_shape",
                       f"column {column!r}: expected a sequence of shape (steps, {f.size}), "
                       f"got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise RowError(column, "empty_sequence", f"column {column!r}: the sequence is empty")
    if rule.max_length is not None and arr.shape[0] > rule.max_length:
        _by_policy(rule.on_too_long, column, "too_long",
                   f"the sequence has {arr.shape[0]} steps, more than max_length {rule.max_length}; set "
                   f"`on_too_long: truncate` or `drop` to accept such rows", notes, "truncated", f.name)
        arr = arr[: rule.max_length]
    if not np.isfinite(arr).all():  # imputed step by step by `impute_row`
        _by_policy(rule.on_nan, column, "not_finite",
                   "the sequence holds NaN or inf; set `on_nan: drop` or `on_nan: impute` on the feature to accept "
                   "such rows", notes, "non_finite", f.name)
    return arr


def _convert_feature(raw: Mapping[str, Any], rule: FeatureRule, na_values: tuple[str, ...], notes: dict) -> Any:
    f = rule.feature
    if f.kind == "sequence":
        return _convert_sequence(raw, rule, notes, na_values)

    def item(value, column):
        if _is_missing(value, na_values):
            return _missing(rule, column, "missing value", notes)
        return _scalar(value, rule, column, notes)

    if len(rule.columns) > 1:  # a fixed vector from several scalar columns
        return [item(raw[column], column) for column in rule.columns]
    column = rule.columns[0]
    value = raw[column]
    if f.shape:  # a fixed vector held in one column (a Parquet list, a 2-D npz array)
        if value is None:
            return [_missing(rule, column, "missing value", notes)] * f.size
        items = list(np.asarray(value).reshape(-1)) if not isinstance(value, (list, tuple)) else list(value)
        if len(items) != f.size:
            raise RowError(column, "bad_shape",
                           f"column {column!r}: expected {f.size} values, got {len(items)}")
        return [item(v, column) for v in items]
    return item(value, column)


def _class_index(value: Any, column: str, classes: tuple[str, ...]) -> int:
    """A declared class's index, matched by the value's text; an integral float (an
    integer column of npz or Parquet read as floats) also by its integer's text, so
    that ``classes: [1, 2]`` matches 1.0."""
    key = value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if key in classes:
        return classes.index(key)
    if isinstance(value, (float, np.floating)) and float(value).is_integer() and str(int(value)) in classes:
        return classes.index(str(int(value)))
    raise RowError(column, "unknown_class",
                   f"column {column!r}: label {key!r} is not one of the declared classes {list(classes)}")


def _convert_label(raw: Mapping[str, Any], rule: LabelRule, na_values: tuple[str, ...]) -> Any:
    column, label = rule.column, rule.label
    value = raw[column]
    if _is_missing(value, na_values):
        if rule.on_missing == "drop":
            raise _Drop(f"missing_label:{column}")
        raise RowError(column, "missing_label",
                       f"column {column!r}: missing label; set `label.on_missing: drop` to drop such rows")
    if label.task == "regression":
        number = _to_float(value, column)
        why = out_of_domain(number, label.transform)
        if why:
            raise RowError(column, "out_of_domain",
                           f"column {column!r}: label {_show(number)} is outside label.transform {label.transform}'s "
                           f"domain ({why}); fix or remove such rows, or set `label.transform: none`")
        return number
    if rule.threshold is not None:
        return int(_to_float(value, column) > rule.threshold)
    if rule.raw_classes:
        return _class_index(value, column, rule.raw_classes)
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
    notes: dict[str, list[str]] = {}
    try:
        row = {rule.feature.name: _convert_feature(raw, rule, rules.na_values, notes) for rule in rules.features}
        row[rules.label.label.name] = _convert_label(raw, rules.label, rules.na_values)
    except _Drop as drop:
        return None, drop.reason
    if notes:
        row[NOTES] = {kind: tuple(names) for kind, names in notes.items()}
    return row, None


class ImputationError(ValueError):
    """A feature to impute has no training mean (no value of it in the training split)."""


def imputation_values(stats: Mapping[str, Any], names) -> dict[str, Any]:
    """The values `impute_row` fills in: each named feature's mean in ``stats`` (the
    training split's statistics, ``{"features": {name: {"mean": ...}}}``)."""
    out = {}
    for name in names:
        mean = stats["features"][name].get("mean")
        if mean is None or (isinstance(mean, list) and None in mean):
            raise ImputationError(
                f"feature {name!r}: the training split has no value of it (or of one of its components) to take the "
                f"mean of, so there is nothing to impute with; use `on_missing: default` or `drop` instead")
        out[name] = np.asarray(mean, dtype=np.float64)
    return out


def impute_row(row: Mapping[str, Any], values: Mapping[str, Any], schema) -> dict[str, Any]:
    """Fill in what `convert_row` left to impute, with ``values`` (`imputation_values`),
    and drop the notes. An int feature gets the mean rounded to the nearest integer.

    Example:
        >>> from tfstream.transforms.schema import Feature, Label, Schema
        >>> s = Schema((Feature("x", "numeric", "float32"),), Label("y", "regression"))
        >>> impute_row({"x": None, "y": 1.0, NOTES: {"missing": ("x",)}}, {"x": np.float64(2.5)}, s)
        {'x': 2.5, 'y': 1.0}
    """
    row = dict(row)  # a new row: Beam elements are immutable, and other steps read this one
    notes = row.pop(NOTES, None)
    if not notes:
        return row
    todo = set(notes.get("missing", ())) | set(notes.get("non_finite", ()))
    for f in schema.features:
        if f.name not in todo or f.name not in values:
            continue
        fill = values[f.name]
        value = row[f.name]
        if f.kind == "sequence":
            value = np.where(np.isfinite(value), value, fill.astype(np.float32).reshape(1, -1)).astype(np.float32)
        elif f.shape:
            fills = np.broadcast_to(fill, (f.size,))
            value = [_filled(v, float(m), f.dtype) for v, m in zip(value, fills)]
        else:
            value = _filled(value, float(fill), f.dtype)
        row[f.name] = value
    return row


def _filled(value: Any, mean: float, dtype: str) -> Any:
    if value is not None:
        return value
    return int(round(mean)) if dtype == "int64" else mean
