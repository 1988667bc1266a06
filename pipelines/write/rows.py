"""Row routing, shared by both writers: a chunk of raw source rows → each row to its
split, or to the quarantine.

`route_chunk` validates every row of a chunk (`transforms.validation.convert_row`),
assigns a good row to a split (`transforms.split.SplitRouter`: by the stable hash of
its key, or as its file or a column gives it), and turns a rejected or dropped row into
a quarantine record that says where the row is, what happened to it and why. The Beam
pipeline (`beam_pipeline`) maps it over its chunks; `arrays.write_arrays` calls it in
one process: both route a row the same way.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Iterator, Optional, Sequence

from tfstream.transforms.split import SplitRouter
from tfstream.transforms.validation import RowError, RowRules, convert_row

# Tags of the non-split outputs of a chunk (a split name never starts with "_"): its
# quarantined rows, and (in the Beam pipeline) its row count.
QUARANTINED = "_quarantine"
READ = "_read"
# A chunk's optional column of row numbers, when its rows are not numbered one by one
# from its first row (a long-format table's sequences: the source row of each one's first
# step). Never a source column: those are read by name, and start with a letter.
ROW_NUMBERS = "__row__"


def _json_value(value: Any) -> Any:
    """A raw source value as it is shown in the quarantine (arrays by their shape)."""
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        return f"<array of shape {tuple(value.shape)}>"
    if hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):  # strict JSON has no NaN or Infinity
        return repr(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def quarantine_record(file: str, row: int, action: str, reason: str, column: str, message: str,
                      raw: dict[str, Any]) -> dict[str, Any]:
    """One line of the quarantine: where the row is, what happened to it, and why."""
    return {"file": file, "row": row, "action": action, "reason": reason, "column": column, "message": message,
            "values": {c: _json_value(v) for c, v in raw.items()}}


class BadLines(list):
    """A chunk's third element in place of ``{column: values}``: source rows that are not
    rows at all (a CSV line with the wrong number of fields, or bad UTF-8), each a dict
    ``{"row", "lines", "reason", "message", "text"}``. They are read rows, and are
    rejected: quarantined and counted like rows that break a rule, so
    ``validation.max_bad_fraction`` applies to them."""


def rows_in_chunk(chunk: tuple[str, int, dict[str, Any]]) -> int:
    """The number of rows in a chunk ``(file, first_row, {column: values})``."""
    columns = chunk[2]
    if isinstance(columns, BadLines):
        return len(columns)
    return len(next(iter(columns.values()))) if columns else 0


def route_chunk(chunk: tuple[str, int, dict[str, Any]], rules: RowRules, router: SplitRouter,
                split_key: Sequence[str], *, arrays: bool = False,
                shown: Optional[Callable[[str], str]] = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Validate every row of a chunk and route it: to its split, or to the quarantine,
    rejected (it breaks a rule, or its split column names no split: ``unknown_split``)
    or dropped (a rule says drop).

    The split key (hashed for a hash split, and to carve a given split) is the
    ``split_key`` columns' values, or, without key columns, the row's number alone for
    arrays (an npz file, or `write_arrays`'s arrays: the same arrays land in the same
    splits whichever writes them), and the file's base name and the row number for a
    table (so a row keeps its split when the file moves).

    Args:
        chunk: ``(file, first row number, {column: values})`` as `sources.read_chunks`
            yields it.
        rules: the job's row rules.
        router: the job's split router (`JobConfig.split_plan().router(...)`).
        split_key: the split key columns (may be empty).
        arrays: whether the chunk comes from arrays (see the split key above).
        shown: how quarantine records name the file (`record_paths.PathRecorder.file`:
            ``source.record_paths``); default: as the chunk names it.

    Yields:
        ``(split name, typed row)``, or ``(QUARANTINED, quarantine record)``.

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> from tfstream.transforms.validation import FeatureRule, LabelRule
        >>> rules = RowRules((FeatureRule(Feature("x", "numeric", "float32"), ("x",)),),
        ...                  LabelRule(Label("y", "regression"), "y"))
        >>> [(tag, out.get("message", out)) for tag, out in
        ...  route_chunk(("f.csv", 1, {"x": ["1", "?"], "y": ["2", "3"]}), rules, SplitRouter({"train": 1.0}), ())]
        [('train', {'x': 1.0, 'y': 2.0}), ('_quarantine', "f.csv: row 2: column 'x': expected a number, got '?'")]
        >>> by_fold = SplitRouter(given=["train", "test"], column="fold", values={"1": "train", "2": "test"})
        >>> (split, row), (_, bad) = route_chunk(
        ...     ("f.csv", 1, {"x": ["1", "2"], "y": ["2", "3"], "fold": ["2", "5"]}), rules, by_fold, ())
        >>> split, bad["reason"], bad["column"]
        ('test', 'unknown_split', 'fold')
        >>> print(bad["message"])
        f.csv: row 2: column 'fold': '5' names no split; the split values are '1', '2' (split.values)
    """
    path, first_row, columns = chunk
    name = shown(path) if shown is not None else path
    if isinstance(columns, BadLines):
        for bad in columns:
            message = bad["message"].replace(path, name, 1) if name != path else bad["message"]
            record = quarantine_record(name, bad["row"], "rejected", bad["reason"], "", message,
                                       {"text": bad["text"]})
            record["lines"] = bad["lines"]
            yield QUARANTINED, record
        return
    numbers = columns.get(ROW_NUMBERS)
    keys = [c for c in columns if c != ROW_NUMBERS]
    split_key = tuple(split_key)
    base = os.path.basename(path)
    given = router.file_split(path)  # None unless splits are given per file
    split_column = router.column
    for i in range(rows_in_chunk(chunk)):
        raw = {c: columns[c][i] for c in keys}
        row_number = numbers[i] if numbers is not None else first_row + i
        if split_column is not None:  # splits given per row
            given = router.value_split(raw[split_column])
            if given is None:
                yield QUARANTINED, quarantine_record(
                    name, row_number, "rejected", "unknown_split", split_column,
                    f"{name}: row {row_number}: {router.unknown_value(raw[split_column])}", raw)
                continue
        try:
            row, dropped = convert_row(raw, rules)
        except RowError as e:
            yield QUARANTINED, quarantine_record(
                name, row_number, "rejected", e.reason, e.column, f"{name}: row {row_number}: {e}", raw)
            continue
        if row is None:
            reason, _, column = dropped.partition(":")
            yield QUARANTINED, quarantine_record(
                name, row_number, "dropped", reason, column,
                f"{name}: row {row_number}: dropped by the rule for {reason.replace('_', ' ')} values "
                f"in column {column!r}", raw)
            continue
        key = [raw[c] for c in split_key] if split_key else [row_number] if arrays else [base, row_number]
        yield router.assign(given, key), row


def quarantine_key(record: dict[str, Any]) -> tuple[str, str]:
    """``(action, "reason:column")``: what the manifest counts quarantined rows by."""
    return record["action"], f"{record['reason']}:{record['column']}"


def first_example(record: dict[str, Any]) -> tuple[str, tuple[str, int, str]]:
    """``("reason:column", (file, row, message))``: the smallest per key is quoted."""
    return f"{record['reason']}:{record['column']}", (record["file"], record["row"], record["message"])

