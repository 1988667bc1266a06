"""CSV sources (plain, gzip, bzip2 or zip members), read with pyarrow's streaming reader.

Valid RFC 4180 CSV reads whatever the size of the file and of its rows, with no setting:

* **Quoted newlines.** pyarrow reads a file in blocks, and by default cuts a block at its
  last newline, which may fall inside a quoted value ("CSV parser got out of sync with
  chunker"): such a file read only while it fitted in one block. Here
  ``newlines_in_values`` is always on, so the cut follows the quotes. On the flights CSV
  (336,776 rows, 31 MB, no quoted newline) it gives the same chunks at the same speed:
  `csv_chunks` at 571,000 rows/s with it, 584,000 without (medians of 5 interleaved
  runs, within their spread), so no setting turns it off.
* **Large rows.** A row must fit in one of pyarrow's blocks. Blocks are `BLOCK_SIZE`
  (4 MiB; the batches, hence the chunks, of every file whose rows fit are as before). A
  file with a larger row is read again from its start with blocks 4 times larger (up
  to `MAX_ROW_BYTES`), skipping the rows already read: only such files pay for it.
  Python's `csv` module (the header check, and locating a bad line) gets the same
  bound, in place of its default limit of 128 KiB per field.

A line pyarrow cannot parse (a wrong number of fields, bad UTF-8) does not stop the run:
from the first such line on, that file (member) is read with Python's `csv` module
(`_python_chunks`, on that path only: the rows before it stay pyarrow's), and every bad
line becomes a rejected row (`rows.BadLines`: reason ``bad_line`` or ``bad_encoding``,
with its row, line(s) and text, cut to `MAX_TEXT` characters), quarantined and counted,
so ``validation.max_bad_fraction`` applies. Valid files never take that path, so their
rows, and the shards, are as before. A row larger than `MAX_ROW_BYTES` (most often a
quote never closed) still stops the read with a `SourceError` naming the file, the row and
the line (`_locate_bad_row`).
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import gzip
import io
import zipfile
from typing import Any, Iterator, Sequence

from tfstream.pipelines.write.rows import BadLines
from tfstream.pipelines.write.sources import SourceError, display_name, open_file

BLOCK_SIZE = 1 << 22  # pyarrow's block: the rows parsed at a time
MAX_ROW_BYTES = 1 << 30  # the largest row read (pyarrow's block size is an int32)
_GROWTH = 4  # a block too small for a row grows 4 times: a 10 MB row costs one read again
MAX_TEXT = 200  # the characters of a bad line kept in the quarantine


def _allow_large_fields() -> None:
    """Let the `csv` module read fields as large as pyarrow does (a process-wide setting,
    only ever raised)."""
    if csv.field_size_limit() < MAX_ROW_BYTES:
        csv.field_size_limit(MAX_ROW_BYTES)


@contextlib.contextmanager
def csv_streams(path: str):
    """Yields ``[(display_name, binary stream), ...]``: one per CSV member of a zip."""
    with open_file(path) as raw:
        if path.endswith(".zip"):
            data = raw if raw.seekable() else io.BytesIO(raw.read())
            try:
                archive = zipfile.ZipFile(data)
            except zipfile.BadZipFile as e:
                raise SourceError(f"{path}: not a valid zip file: {e}") from e
            members = [m for m in archive.namelist() if not m.endswith("/")]
            if not members:
                raise SourceError(f"{path}: the zip file holds no file")
            with contextlib.ExitStack() as stack:
                yield [(display_name(path, m), stack.enter_context(archive.open(m))) for m in members]
        elif path.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                yield [(display_name(path), stream)]
        elif path.endswith(".bz2"):
            with bz2.BZ2File(raw, mode="rb") as stream:
                yield [(display_name(path), stream)]
        else:
            yield [(display_name(path), raw)]


class _BadLine(Exception):
    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason


def _decoded_lines(stream, counter: list[int]):
    for raw in stream:
        counter[0] += 1
        try:
            yield raw.decode("utf-8-sig" if counter[0] == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise _BadLine(counter[0], f"invalid UTF-8 ({e.reason} at byte {e.start})") from None


def _locate_bad_row(path: str, name: str, delimiter: str) -> str | None:
    """Find the first row pyarrow could not parse (wrong field count, bad UTF-8).

    pyarrow's streaming reader does not report row numbers, so on a parse error the file
    is scanned again with the csv module; this runs only on the error path.
    """
    _allow_large_fields()
    with csv_streams(path) as streams:
        for member, stream in streams:
            if member != name:
                continue
            line = [0]
            header: list[str] | None = None
            row, start = 0, 1  # start: the line the next row starts on
            try:
                for fields in csv.reader(_decoded_lines(stream, line), delimiter=delimiter):
                    first, start = start, line[0] + 1
                    if not fields:
                        continue
                    if header is None:
                        header = fields
                        continue
                    row += 1
                    if len(fields) != len(header):  # a row over several lines: where it starts, too
                        lines = f"line {line[0]}" if first == line[0] else f"lines {first}-{line[0]}"
                        return f"row {row} ({lines}): expected {len(header)} fields like the header, got {len(fields)}"
            except _BadLine as bad:
                return f"line {bad.line}: {bad.reason}"
            except csv.Error as e:
                return f"line {line[0]}: {e}"
    return None


def csv_header(stream, name: str, delimiter: str) -> list[str]:
    """The header of a CSV stream, exactly as pyarrow will name the columns.

    Raises:
        SourceError: an empty file, a header without data rows, or bad UTF-8.
    """
    _allow_large_fields()
    line = [0]
    lines = _decoded_lines(stream, line)
    try:
        header = next(csv.reader(lines, delimiter=delimiter), None)
        if not header or not any(c.strip() for c in header):
            raise SourceError(f"{name}: the file is empty; expected a header line and data rows")
        # Data rows are checked raw: bad UTF-8 in one is that row's problem (quarantined).
        if not any(l.strip() for l in stream):
            raise SourceError(f"{name}: the file has a header but no data rows")
    except _BadLine as bad:
        raise SourceError(f"{name}: line {bad.line}: {bad.reason}") from None
    except csv.Error as e:
        raise SourceError(f"{name}: line {line[0]}: cannot read the header as CSV: {e}") from None
    return header


def _csv_reader(stream, name: str, columns: Sequence[str], delimiter: str, block_size: int):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    return pcsv.open_csv(
        stream,
        read_options=pcsv.ReadOptions(block_size=block_size),
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        # Every column is read as text: validation converts it, and can then name
        # the row and the column of a value that does not parse.
        convert_options=pcsv.ConvertOptions(
            include_columns=list(columns),
            column_types={c: pa.string() for c in columns},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


class _BadInput(Exception):
    """pyarrow met a bad line after ``done`` rows: read the rest with `_python_chunks`."""

    def __init__(self, done: int):
        super().__init__(done)
        self.done = done


def _bad_line(error: Exception) -> bool:
    """A wrong number of fields, or bad UTF-8 in a value (pyarrow's messages)."""
    text = str(error)
    return "CSV parse error: Expected" in text or "invalid UTF8" in text


def _records(stream, delimiter: str):
    """``(first line, last line, fields, raw bytes)`` per record of a CSV stream, with
    Python's `csv` module; bad UTF-8 is kept as surrogates (``surrogateescape``), found
    per record afterwards."""
    state = {"line": 0, "raw": []}

    def lines():
        for raw in stream:
            state["line"] += 1
            state["raw"].append(raw)
            yield raw.decode("utf-8-sig" if state["line"] == 1 else "utf-8", "surrogateescape")

    start = 1
    reader = csv.reader(lines(), delimiter=delimiter)
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise SourceError(f"line {state['line']}: {e}") from None
        raw, state["raw"] = b"".join(state["raw"]), []
        first, start = start, state["line"] + 1
        yield first, state["line"], fields, raw


def _bad_record(name: str, row: int, first: int, last: int, fields: list[str], raw: bytes,
                width: int, selected: Sequence[int] = ()) -> dict[str, Any] | None:
    """The quarantine entry of a record that is not a row, or None for a good one. Bad
    UTF-8 counts only in the ``selected`` fields (the columns the job reads), as pyarrow
    judges a row: a byte in a column nobody reads does not reject it."""
    lines = str(first) if first == last else f"{first}-{last}"
    where = f"{name}: row {row} (line{'s' if first != last else ''} {lines})"
    reason = None
    if len(fields) != width:  # not a row: its bad bytes, else its field count
        try:
            raw.decode("utf-8")
            reason, message = "bad_line", f"{where}: expected {width} fields like the header, got {len(fields)}"
        except UnicodeDecodeError as e:
            reason, message = "bad_encoding", f"{where}: invalid UTF-8 ({e.reason} at byte {e.start} of the row)"
    else:
        for i in selected:  # bad bytes were kept as surrogates (surrogateescape)
            if any("\udc80" <= ch <= "\udcff" for ch in fields[i]):
                reason, message = "bad_encoding", f"{where}: invalid UTF-8 in field {i + 1} of the row"
                break
    if reason is None:
        return None
    text = raw.decode("utf-8", "replace").rstrip("\r\n")
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT] + f"... ({len(text) - MAX_TEXT} more characters)"
    return {"row": row, "lines": lines, "reason": reason, "message": message, "text": text}


def _python_chunks(path: str, name: str, columns: Sequence[str], delimiter: str, chunk_rows: int,
                   skip: int) -> Iterator[tuple[str, int, Any]]:
    """The chunks of one CSV member after its first ``skip`` data rows, read with
    Python's `csv` module: runs of good rows as ``{column: [str, ...]}``, and each bad
    line as `rows.BadLines` (see the module doc). Rows are numbered as pyarrow numbers
    them (blank lines are not rows)."""
    _allow_large_fields()
    with csv_streams(path) as streams:
        stream = dict(streams)[name]
        header: list[str] | None = None
        index: list[int] = []
        row, first_row, values = 0, 0, {c: [] for c in columns}
        try:
            for first, last, fields, raw in _records(stream, delimiter):
                if not fields:  # a blank line
                    continue
                if header is None:
                    header = fields
                    index = [header.index(c) for c in columns]
                    continue
                row += 1
                if row <= skip:
                    continue
                bad = _bad_record(name, row, first, last, fields, raw, len(header), index)
                if bad is None:
                    if not values[columns[0]]:
                        first_row = row
                    for c, i in zip(columns, index):
                        values[c].append(fields[i])
                    if len(values[columns[0]]) >= chunk_rows:
                        yield name, first_row, values
                        values = {c: [] for c in columns}
                    continue
                # Its fields where the header puts them, if it has them: a long table's
                # reader rejects the sequence whose id the bad line holds (long_source).
                bad["fields"] = {c: fields[i] for c, i in zip(columns, index) if i < len(fields)}
                if values[columns[0]]:
                    yield name, first_row, values
                    values = {c: [] for c in columns}
                yield name, row, BadLines([bad])
        except SourceError as e:
            raise SourceError(f"{name}: {e}") from None
        if values[columns[0]]:
            yield name, first_row, values


def _row_too_large(error: Exception) -> bool:
    return "straddles two block boundaries" in str(error)


def _batches(path: str, name: str, stream, columns: Sequence[str], delimiter: str) -> Iterator[Any]:
    """pyarrow record batches of one CSV member, every row once; the member is read
    again with larger blocks when a row does not fit in one (see the module doc)."""
    block_size, done = BLOCK_SIZE, 0  # rows already yielded
    with contextlib.ExitStack() as reopened:
        while True:
            seen = 0  # rows of this pass
            try:
                reader = _csv_reader(stream, name, columns, delimiter, block_size)
                for batch in reader:
                    if seen + batch.num_rows > done:
                        yield batch.slice(max(0, done - seen))
                        done = seen + batch.num_rows
                    seen += batch.num_rows
                return
            except Exception as e:  # noqa: BLE001 - pyarrow.ArrowInvalid and friends
                if _bad_line(e):
                    raise _BadInput(done) from e
                if "Empty CSV file" in str(e):
                    raise SourceError(f"{name}: the file is empty; expected a header line and data rows") from e
                if not _row_too_large(e) or block_size >= MAX_ROW_BYTES:
                    where = _locate_bad_row(path, name, delimiter) or f"after data row {done}"
                    if _row_too_large(e):
                        raise SourceError(
                            f"{name}: {where}: a row is larger than {MAX_ROW_BYTES >> 20} MiB, the most tfstream "
                            f"reads; most often a quote that is never closed: close it, or write that value "
                            f"elsewhere") from e
                    raise SourceError(f"{name}: {where}: {e}") from e
            block_size = min(block_size * _GROWTH, MAX_ROW_BYTES)
            reopened.close()
            stream = dict(reopened.enter_context(csv_streams(path)))[name]


def csv_chunks(path: str, *, delimiter: str, columns: Sequence[str],
               chunk_rows: int) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """``(file name, first data row, {column: [str, ...]})`` chunks of a CSV file (every
    member of a zip file in turn); rows count from 1 after the header."""
    with csv_streams(path) as streams:
        for name, stream in streams:
            row = 1
            try:
                for batch in _batches(path, name, stream, columns, delimiter):
                    for start in range(0, batch.num_rows, chunk_rows):
                        part = batch.slice(start, chunk_rows)
                        yield name, row, {c: part.column(c).to_pylist() for c in columns}
                        row += part.num_rows
            except _BadInput as bad:  # a bad line: the rest of this member through the csv module
                yield from _python_chunks(path, name, columns, delimiter, chunk_rows, skip=bad.done)
