"""Long-format sequence tables: one row per time step (CSV or Parquet), with an id column,
an order column and value columns → one sequence per id (``source.sequence``).

`long_chunks` reads a file's rows (`sources.table_chunks`: the CSV and Parquet readers,
so bad CSV lines are quarantined as in any CSV), groups them by id, sorts each group by
its order column, and yields chunks whose rows are sequences: a step column holds the
group's values in order (one list per sequence), every other column the group's one
value. `route_chunk` then validates and splits them like any row; the hash split keys on
the id (`JobConfig.split_key`), so all the steps of a sequence land in one split.

Scope and memory: grouping is **per file** (per member of a zip file). The columns the
job reads of one file are held while it is grouped (one file at a time per worker, no
shuffle of rows: a `GroupByKey` of rows would hold the whole dataset on the local
runners), so an archive larger than a worker's memory is written as several files, each
holding whole sequences. An id whose rows are in two files becomes two sequences.

A group that cannot be a sequence is rejected whole, into the quarantine, with its
first row, its rows and a reason (`rows.BadLines`):

* ``varies_within_sequence``: a per-sequence column (the label, a split key, a scalar
  feature) whose value differs between the group's rows (the same text in a CSV, the
  same value in Parquet);
* ``duplicate_order``: two steps with the same order value;
* ``bad_order``: an order value that is missing or not a number (nor a Parquet time);
* ``missing_step``: a CSV line holding the sequence's id is not a valid row (a wrong
  number of fields, bad UTF-8: quarantined as a bad line), so a step would be missing.
  The id is read where the header puts it; a line too short to hold it is quarantined
  alone.

Rows with no id are rejected together, one entry per file (``missing_id``). A missing
or non-finite step value is the feature's ``on_nan`` rule's to handle. A read "row" of
such a source is a sequence (or a rejected group): read = written + dropped + rejected
counts sequences.
"""

from __future__ import annotations

import datetime
import math
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from tfstream.pipelines.config_errors import cut
from tfstream.pipelines.write.rows import ROW_NUMBERS, BadLines, rows_in_chunk
from tfstream.pipelines.write.sources import table_chunks

CHUNK_SEQUENCES = 1024  # sequences per chunk yielded
_SHOWN = 5  # values quoted in a message


class _BadOrder(ValueError):
    pass


def _missing(value: Any, na_values: Sequence[str]) -> bool:
    return value is None or (isinstance(value, str) and value in na_values) or \
        (isinstance(value, float) and math.isnan(value))


def _order_key(value: Any, na_values: Sequence[str]) -> Any:
    """An order value as a sort key: a number (a CSV cell parsed), or a Parquet time."""
    if _missing(value, na_values):
        raise _BadOrder("is missing")
    if isinstance(value, (datetime.date, datetime.datetime, datetime.timedelta, datetime.time)):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise _BadOrder(f"{value[:40]!r} is not a number") from None
            value = number
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _BadOrder(f"{value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise _BadOrder(f"{value!r} is not finite")
    return value


def _bad(name: str, rows: Sequence[int], reason: str, text: str, message: str) -> dict[str, Any]:
    """A rejected group, as `rows.BadLines` holds it: its first row; ``lines``: its rows."""
    first, last = min(rows), max(rows)
    return {"row": first, "lines": str(first) if first == last else f"{first}-{last}", "reason": reason,
            "message": f"{name}: row {first}: {message}", "text": text}


def _group(name: str, data: dict[str, list], numbers: list[int], *, table, step_columns: Sequence[str],
           na_values: Sequence[str], broken: Optional[dict] = None) -> tuple[dict[str, list], BadLines]:
    """One file's rows → ``({column: one entry per sequence}, rejected groups)``.
    ``broken``: id → the row of a bad CSV line that holds it (the sequence misses a step)."""
    broken = broken or {}
    ids = data[table.id]
    groups: dict[Any, list[int]] = {}
    no_id: list[int] = []
    for i, value in enumerate(ids):
        if _missing(value, na_values):
            no_id.append(i)
        else:
            groups.setdefault(value, []).append(i)
    bad = BadLines()
    if no_id:
        rows = [numbers[i] for i in no_id]
        bad.append(_bad(name, rows, "missing_id", f"{len(rows)} row(s) with no id",
                        f"{len(rows)} row(s) have no value in the id column {table.id!r} (source.sequence.id), so "
                        f"they belong to no sequence; first at rows {rows[:_SHOWN]}"))
    steps = set(step_columns)
    per_sequence = [c for c in data if c not in steps and c not in (table.id, table.order)]
    out: dict[str, list] = {c: [] for c in data if c != table.order and c not in steps}
    out[ROW_NUMBERS] = []
    perm: list[int] = []  # the good groups' rows, group after group, each in order
    ends: list[int] = []
    for key, members in groups.items():
        rows = [numbers[i] for i in members]
        where = f"sequence id {cut(repr(key))} ({len(members)} row{'s' if len(members) > 1 else ''})"
        if key in broken:
            bad.append(_bad(name, rows, "missing_step", where,
                            f"{where}: row {broken[key]} holds this id but is not a valid row (quarantined as a bad "
                            f"line), so the sequence would miss a step; fix that line"))
            continue
        try:
            order = [_order_key(data[table.order][i], na_values) for i in members]
        except _BadOrder as e:
            bad.append(_bad(name, rows, "bad_order", where, f"{where}: an order value (column {table.order!r}) {e}; "
                                                            f"steps are sorted by numbers (or Parquet times)"))
            continue
        try:
            ranked = sorted(range(len(members)), key=order.__getitem__)
        except TypeError:  # kinds of values that do not compare (a Parquet time and a number)
            bad.append(_bad(name, rows, "bad_order", where, f"{where}: the order values (column {table.order!r}) "
                                                            f"do not compare with one another"))
            continue
        twice = next((j for j, k in zip(ranked, ranked[1:]) if order[j] == order[k]), None)
        if twice is not None:
            at = [rows[j] for j in ranked if order[j] == order[twice]]
            bad.append(_bad(name, rows, "duplicate_order", where,
                            f"{where}: order value {cut(repr(data[table.order][members[twice]]))} (column "
                            f"{table.order!r}) "
                            f"is at rows {at[:_SHOWN]}; each step of a sequence needs its own order value: remove "
                            f"the repeated rows, or give them distinct order values"))
            continue
        varies = next((c for c in per_sequence if any(data[c][i] != data[c][members[0]] and not
                                                      (_missing(data[c][i], ()) and _missing(data[c][members[0]], ()))
                                                      for i in members)), None)
        if varies is not None:
            seen = list(dict.fromkeys(cut(repr(data[varies][i])) for i in members))
            bad.append(_bad(name, rows, "varies_within_sequence", where,
                            f"{where}: column {varies!r} holds {len(seen)} different values "
                            f"({', '.join(seen[:_SHOWN])}), but it is read once per sequence (the label, a split "
                            f"column or a scalar feature): make it the same on every step, or read it as a "
                            f"sequence feature"))
            continue
        perm.extend(members[j] for j in ranked)
        ends.append(len(perm))
        for c in out:
            out[c].append(min(rows) if c == ROW_NUMBERS else data[c][members[0]])
    for c in [c for c in data if c in steps]:  # one gather per column (NumPy), then cut per sequence
        gathered = np.asarray(data[c], dtype=object)[perm] if perm else np.empty(0, object)
        out[c] = [gathered[a:b].tolist() for a, b in zip([0, *ends[:-1]], ends)]
    return {c: out[c] for c in [*data, ROW_NUMBERS] if c in out}, bad


def long_chunks(path: str, *, source, columns: Sequence[str], step_columns: Sequence[str],
                chunk_rows: int = CHUNK_SEQUENCES) -> Iterator[tuple[str, int, Any]]:
    """Yield a long-format file's sequences as `sources.read_chunks` chunks.

    Args:
        path: a CSV or Parquet file.
        source: the `SourceConfig`, with ``sequence`` (its id and order columns).
        columns: the columns read (the id and order among them).
        step_columns: the columns whose values are per step (the sequence features').
        chunk_rows: sequences per chunk.

    Yields:
        ``(name, first row, columns)``: ``columns`` maps each column to one entry per
        sequence (a step column: its values in order), plus `rows.ROW_NUMBERS` (the
        source row of each sequence's first step); or `rows.BadLines` (the rejected
        groups, and bad CSV lines, as read).

    Example:
        >>> import os, tempfile
        >>> from tfstream.pipelines.config import SourceConfig
        >>> path = os.path.join(tempfile.mkdtemp(), "steps.csv")
        >>> _ = open(path, "w").write("id,t,x,y\\na,2,0.5,1\\nb,1,3,0\\na,1,0.25,1\\n")
        >>> source = SourceConfig(format="csv", path=path, sequence={"id": "id", "order": "t"})
        >>> [chunk for _, _, chunk in long_chunks(path, source=source, columns=["x", "y", "id", "t"],
        ...                                       step_columns=["x"])]
        [{'x': [['0.25', '0.5'], ['3']], 'y': ['1', '0'], 'id': ['a', 'b'], '__row__': [1, 2]}]
    """
    table = source.sequence
    columns = list(columns)
    name, data, numbers, broken = None, {c: [] for c in columns}, [], {}

    def flush():
        if not numbers:
            return
        out, bad = _group(name, data, numbers, table=table, step_columns=step_columns, na_values=source.na_values,
                          broken=broken)
        if bad:
            yield name, bad[0]["row"], bad
        n = len(out[ROW_NUMBERS])
        for start in range(0, n, chunk_rows):
            part = {c: v[start:start + chunk_rows] for c, v in out.items()}
            yield name, part[ROW_NUMBERS][0], part

    for chunk in table_chunks(path, source=source, columns=columns):
        if chunk[0] != name:  # a new file (zip member): group the one before
            yield from flush()
            name, data, numbers, broken = chunk[0], {c: [] for c in columns}, [], {}
        if isinstance(chunk[2], BadLines):  # bad CSV lines, as in any CSV; their sequences are rejected
            for line in chunk[2]:
                if table.id in line.get("fields", {}):
                    broken.setdefault(line["fields"][table.id], line["row"])
            yield chunk
            continue
        first = chunk[1]
        numbers.extend(range(first, first + rows_in_chunk(chunk)))
        for c in columns:
            data[c].extend(chunk[2][c])
    yield from flush()
