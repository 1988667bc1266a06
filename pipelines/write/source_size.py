"""How large a source is, measured cheaply on the driver: how many rows it has, and how
large its records will be, so that `shard_plan` can choose each split's shard count
before anything is written.

* **Rows**, exact where the format records them: npz array headers (no data read),
  Parquet footers (``num_rows``), a TFDS dataset's split sizes (its
  ``dataset_info.json``), in-memory arrays. For CSV, the uncompressed size divided by the
  mean bytes per row of the first rows (`_csv_size`): a plain file's size; a zip member's
  ``file_size``; for gzip and bzip2, the compressed size times the compression ratio of
  the first 1 MiB of text of the first file (decompressed as it is sampled; a file of
  another kind than the first: `_DEFAULT_RATIO`), and for gzip its ISIZE trailer (the
  size modulo 2**32) where that agrees with the ratio (`_gzip_size`). A first file read
  to its end gives its exact row count.
  A long-format table (``source.sequence``): its rows so counted, over the mean steps
  per sequence of the first file's first sequences (`_long_size`).
* **Bytes per record**: the valid rows among the first `SAMPLE_ROWS` rows of the first
  file, validated (`validation.convert_row`), encoded
  (`example_encoder.encode_examples_buffer`) as the writers do, their mean size plus
  `FRAMING` bytes of TFRecord framing.

Nothing is read whole: headers, footers, sizes (from the file system's metadata for
``gs://`` and other remote files), and the first rows of the first file (of a long-format
table, the first file, whose rows are grouped): about 30 ms
for the flights CSV or the digits npz, most of it validating the 1,000 rows. The
result depends on the source's bytes and the config only, so a rerun chooses the same
counts; an .npz and the same arrays given to `write_arrays` measure the same (the same
rows, exactly, and the same sample).
"""

from __future__ import annotations

import bz2
import dataclasses
import io
import itertools
import zlib
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

from tfstream.pipelines import fs
from tfstream.pipelines.write import sources
from tfstream.pipelines.write.rows import BadLines, rows_in_chunk
from tfstream.transforms.example_encoder import encode_examples_buffer, rows_to_columns
from tfstream.transforms.validation import RowError, convert_row, impute_row

SAMPLE_ROWS = 1000  # the rows of the first file whose valid ones are encoded
FRAMING = 16  # bytes a TFRecord adds to a record: its length, and two CRCs
# How much CSV text the first rows of a compressed CSV compress from, at least, for the
# ratio (more is read when the first rows are longer); and the ratio assumed for a
# compressed file when the first file is not compressed the same way (CSV typically
# compresses 3 to 8 times).
_RATIO_SAMPLE_BYTES = 1 << 20
_DEFAULT_RATIO = 4.0
# A gzip trailer's size is believed when within this factor of the size at the first
# file's ratio (files of one source compress alike; two members make it half the size).
_GZIP_TRUST = 1.5


@dataclasses.dataclass(frozen=True)
class SourceSize:
    """How large a source is.

    Attributes:
        rows: the rows of the source (read from the files, before validation).
        rows_exact: whether ``rows`` is exact, or estimated from the size (CSV).
        record_bytes: the mean size of a written record, framing included; None when the
            sample held no valid row.
    """

    rows: int
    rows_exact: bool
    record_bytes: Optional[float]


def measure_source(paths: Sequence[str], config) -> SourceSize:
    """The size of the source files of a job (`sources.resolve_source_paths`), as the
    module doc says.

    Raises:
        sources.SourceError: a file that cannot be read.
    """
    source, columns = config.source, config.source_columns()
    if source.sequence is not None:
        return _long_size(paths, config)
    if source.tfds is not None:
        from tfstream.pipelines.write.tfds_source import tfds_chunks, tfds_num_examples

        return SourceSize(tfds_num_examples(source), True,
                          _record_bytes(tfds_chunks(paths[0], columns, SAMPLE_ROWS), config))
    if source.format == "csv":
        return _csv_size(paths, config)
    if source.format == "parquet":
        import pyarrow.parquet as pq

        rows = 0
        for path in paths:
            with sources.open_file(path) as f:
                rows += pq.ParquetFile(f).metadata.num_rows
        chunks = sources.read_chunks(paths[0], source=source, columns=columns, chunk_rows=SAMPLE_ROWS)
        return SourceSize(rows, True, _record_bytes(chunks, config))
    rows = 0
    for path in paths:
        with sources.open_file(path) as f:
            rows += _npz_rows(f, path, columns, source.lengths_key)
    with sources.open_file(paths[0]) as f:
        lengths, head = _npz_head(f, paths[0], columns, config.sequence_columns(), source.lengths_key, SAMPLE_ROWS)
        sample = _record_bytes(sources.array_chunks(paths[0], head, config.sequence_columns(), lengths,
                                                    SAMPLE_ROWS), config)
    return SourceSize(rows, True, sample)


def _long_size(paths: Sequence[str], config) -> SourceSize:
    """A long-format table (`long_source`): its rows (steps), measured as its format's,
    over the mean steps per sequence of the first file's first `SAMPLE_ROWS` sequences
    (that file is read whole: its rows are grouped); their records sized as any rows'."""
    import pyarrow.parquet as pq

    from tfstream.pipelines.write.long_source import long_chunks

    source = config.source
    if source.format == "parquet":
        steps = 0
        for path in paths:
            with sources.open_file(path) as f:
                steps += pq.ParquetFile(f).metadata.num_rows
    else:
        steps = _csv_size(paths, config).rows
    step_columns = config.sequence_columns()
    chunks = long_chunks(paths[0], source=source, columns=config.source_columns(), step_columns=step_columns,
                         chunk_rows=SAMPLE_ROWS)
    try:
        first = next((chunk for chunk in chunks if not isinstance(chunk[2], BadLines)), None)
    finally:
        chunks.close()
    if first is None:
        return SourceSize(steps, False, None)
    per_sequence = sum(len(s) for s in first[2][step_columns[0]]) / rows_in_chunk(first)
    return SourceSize(max(1, round(steps / per_sequence)), False, _record_bytes(iter([first]), config))


def measure_arrays(config, columns: Mapping[str, Any], lengths: Optional[np.ndarray]) -> SourceSize:
    """The size of `write_arrays`'s arrays (in the npz layouts): the same as an .npz of
    them measures."""
    sequence_columns = config.sequence_columns()
    rows = lengths.shape[0] if lengths is not None else next(iter(columns.values())).shape[0]
    head_lengths = None if lengths is None else np.asarray(lengths[:SAMPLE_ROWS])
    steps = None if lengths is None else int(head_lengths.astype(np.int64).sum())
    head = {c: arr[:steps] if c in sequence_columns and steps is not None else arr[:SAMPLE_ROWS]
            for c, arr in columns.items()}
    chunks = sources.array_chunks("arrays", head, sequence_columns, head_lengths, SAMPLE_ROWS)
    return SourceSize(int(rows), True, _record_bytes(chunks, config))


def _record_bytes(chunks: Iterator[tuple[str, int, Any]], config) -> Optional[float]:
    """The mean size of the framed records of the valid rows among the first
    `SAMPLE_ROWS` rows of ``chunks``; None when none is valid. A row that imputes is
    sized with zeros in place of the training means (the encoded sizes of floats do not
    depend on their values)."""
    rules, schema = config.row_rules(), config.schema()
    zeros = {name: np.zeros(()) for name in config.imputed_features()}
    rows: list[dict[str, Any]] = []
    read = 0
    try:
        for chunk in chunks:
            values = chunk[2]
            n = rows_in_chunk(chunk)
            if not isinstance(values, BadLines):
                for i in range(min(n, SAMPLE_ROWS - read)):
                    try:
                        row, _ = convert_row({c: v[i] for c, v in values.items()}, rules)
                    except RowError:
                        continue
                    if row is not None:
                        rows.append(impute_row(row, zeros, schema))
            read += n
            if read >= SAMPLE_ROWS:
                break
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:  # a generator: let it close its file now
            close()
    if not rows:
        return None
    _, offsets = encode_examples_buffer(rows_to_columns(rows, schema), schema, len(rows))
    return (int(offsets[-1]) + FRAMING * len(rows)) / len(rows)


# --------------------------------------------------------------------------- npz


def _npz_rows(f, path: str, columns: Sequence[str], lengths_key: Optional[str]) -> int:
    """An npz file's rows, from the .npy headers of its members."""
    headers = sources.npz_headers(f, path)
    return int(headers[lengths_key or columns[0]].shape[0])


def _npz_head(f, path: str, columns: Sequence[str], sequence_columns: Sequence[str], lengths_key: Optional[str],
              count: int) -> tuple[Optional[np.ndarray], dict[str, np.ndarray]]:
    """``(lengths, {column: array})`` of an npz file's first ``count`` rows, in its layout
    (with ``lengths_key``, the sequence arrays' first ``sum(lengths)`` steps), each
    member read only that far."""
    import zipfile

    archive = zipfile.ZipFile(f)
    lengths = steps = None
    if lengths_key is not None:
        lengths = _npy_head(archive, lengths_key, count, path)
        steps = int(lengths.astype(np.int64).sum())
    sequences = set(sequence_columns) if lengths_key is not None else set()
    return lengths, {c: _npy_head(archive, c, steps if c in sequences else count, path) for c in columns}


def _npy_head(archive, name: str, count: int, path: str) -> np.ndarray:
    """The first ``count`` rows of an npz member's array: read from the start of the
    member (uncompressed, or decompressed as far as needed); a Fortran-ordered array or
    a rarer header version is loaded whole."""
    with archive.open(name + ".npy") as m:
        try:
            version = np.lib.format.read_magic(m)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(version)
            if read_header is not None:
                shape, fortran, dtype = read_header(m)
                if shape and (not fortran or len(shape) == 1):
                    count = min(count, shape[0])
                    row_items = int(np.prod(shape[1:], dtype=np.int64))
                    data = m.read(count * row_items * dtype.itemsize)
                    return np.frombuffer(data, dtype=dtype).reshape((count, *shape[1:]))
            m.seek(0)
            return np.lib.format.read_array(m, allow_pickle=False)[:count]
        except ValueError as e:
            raise sources.SourceError(f"{path}: member {name!r} is not a .npy array: {e}") from e


# --------------------------------------------------------------------------- CSV


def _kind(path: str) -> str:
    return next((k for k in ("zip", "gz", "bz2") if path.endswith("." + k)), "plain")


def _csv_size(paths: Sequence[str], config) -> SourceSize:
    """Rows: the first CSV of the first file is sampled (`_CsvSample`); every file's
    uncompressed size, less a header like the first's per CSV (a zip file: per member),
    over the sample's bytes per row."""
    try:
        return _csv_measured(paths, config)
    except (zlib.error, EOFError, OSError) as e:  # the pipeline's reader names the row
        raise sources.SourceError(f"{paths[0]}: cannot read the first rows: {e}") from e


def _csv_measured(paths: Sequence[str], config) -> SourceSize:
    first, kind = paths[0], _kind(paths[0])
    with sources.open_file(first) as raw:
        decompressed = None
        if kind == "zip":
            archive = _zip(raw, first)
            infos = [i for i in archive.infolist() if not i.filename.endswith("/")]
            first_sizes = [i.file_size for i in infos]
            stream = archive.open(infos[0])
        elif kind in ("gz", "bz2"):
            decompressed = _Decompressed(raw, kind)
            stream = io.BufferedReader(decompressed)
        else:
            stream = raw
        sample = _CsvSample(stream, first, config.source_columns(), config.source.delimiter)
        record_bytes = _record_bytes(sample.chunks(), config)
        if sample.eof and len(paths) == 1 and (kind != "zip" or len(first_sizes) == 1):
            return SourceSize(sample.rows, True, record_bytes)
        if decompressed is not None:
            sample.read_on(_RATIO_SAMPLE_BYTES)
    if sample.rows == 0:
        return SourceSize(0, False, record_bytes)
    ratio = {kind: decompressed.ratio()} if decompressed is not None else {}
    if kind != "zip":
        first_sizes = [sample.text_bytes] if sample.eof else _uncompressed_sizes(first, ratio)
    text = sum(max(0, size - sample.header_bytes) for size in first_sizes)
    for path in paths[1:]:
        text += sum(max(0, size - sample.header_bytes) for size in _uncompressed_sizes(path, ratio))
    return SourceSize(round(text * sample.rows / sample.row_bytes), False, record_bytes)


def _zip(f, path: str):
    import zipfile

    try:
        return zipfile.ZipFile(f if f.seekable() else io.BytesIO(f.read()))
    except zipfile.BadZipFile as e:
        raise sources.SourceError(f"{path}: not a valid zip file: {e}") from e


def _uncompressed_sizes(path: str, ratio: Mapping[str, float]) -> list[int]:
    """The uncompressed sizes of the CSVs of a file (one, or a zip file's members),
    without decompressing it (``ratio``: the first file's compression ratio, by kind):
    its size (from the file system's metadata), its zip directory, or its gzip trailer."""
    kind, size = _kind(path), fs.size(path)
    if kind == "plain":
        return [size]
    guess = size * ratio.get(kind, _DEFAULT_RATIO)
    if kind == "bz2" or (kind == "gz" and size < 18):  # bzip2 records no size; 18 bytes: the smallest gzip file
        return [round(guess)]
    with sources.open_file(path) as f:
        if kind == "zip":
            return [i.file_size for i in _zip(f, path).infolist() if not i.filename.endswith("/")]
        f.seek(size - 4)
        isize = int.from_bytes(f.read(4), "little")
    return [_gzip_size(isize, size, guess)]


def _gzip_size(isize: int, size: int, guess: float) -> int:
    """A gzip file's uncompressed size, from its ISIZE trailer (the last member's size
    modulo 2**32), its compressed size, and ``guess`` (its size at the first file's
    compression ratio).

    A file of one member holds ``isize + k * 2**32`` bytes, ``k >= 1`` when ISIZE is
    below the compressed size (CSV compresses): the ``k`` nearest the guess is taken
    when it is within a factor of `_GZIP_TRUST` of the guess (so a file under 4 GiB
    gets its exact size). Otherwise ISIZE is the size of the last of several members
    (concatenated files, bgzip), and the guess is taken.

    Example:
        >>> _gzip_size(300 << 20, 60 << 20, 250e6)   # 300 MiB: ISIZE is the size
        314572800
        >>> _gzip_size(1 << 30, 2 << 30, 10e9)       # 9 GiB, wrapped twice
        9663676416
        >>> _gzip_size(40_000, 2 << 20, 9e6)         # bgzip's last block: the guess
        9000000
    """
    k = max(0 if isize >= size else 1, round((guess - isize) / 2**32))
    candidate = isize + k * 2**32
    return candidate if guess / _GZIP_TRUST <= candidate <= guess * _GZIP_TRUST else round(guess)


class _CsvSample:
    """The first `SAMPLE_ROWS` rows of a CSV stream as one chunk ``(name, 1, {column:
    [str, ...]})``, read with Python's `csv` module (which gives each row's bytes),
    counting the header's bytes and the rows'. A line that is not a row of the header's
    width, or not UTF-8, is counted, not sampled (the pipeline rejects it)."""

    def __init__(self, stream, name: str, columns: Sequence[str], delimiter: str):
        self._stream, self._name, self._columns, self._delimiter = stream, name, list(columns), delimiter
        self.header_bytes = self.row_bytes = self.rows = self.text_bytes = 0
        self.eof = False

    def chunks(self) -> Iterator[tuple[str, int, dict[str, list]]]:
        from tfstream.pipelines.write.csv_source import _allow_large_fields, _records

        _allow_large_fields()
        header: Optional[list[str]] = None
        index: list[int] = []
        values: dict[str, list] = {c: [] for c in self._columns}
        records = 0
        for _, _, fields, raw in itertools.islice(_records(self._stream, self._delimiter), SAMPLE_ROWS + 1):
            records += 1
            self.text_bytes += len(raw)
            if header is None:
                header, self.header_bytes = fields, len(raw)
                index = [header.index(c) for c in self._columns]
                continue
            self.row_bytes += len(raw)
            if not fields:  # a blank line: not a row
                continue
            self.rows += 1
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                continue
            if len(fields) == len(header):
                for c, i in zip(self._columns, index):
                    values[c].append(fields[i])
        self.eof = records <= SAMPLE_ROWS
        yield self._name, 1, values

    def read_on(self, at_least: int) -> None:
        """Read on (not counting rows) until ``at_least`` bytes of text were read, or
        the stream ends: what a compression ratio rests on."""
        while not self.eof and self.text_bytes < at_least:
            block = self._stream.read(min(1 << 20, at_least - self.text_bytes))
            self.text_bytes += len(block)
            self.eof = not block


class _Decompressed(io.RawIOBase):
    """A gzip or bzip2 file's text (several members or streams in a row, as `gzip` and
    `bz2` read them), counting the bytes it consumed and produced for `ratio`."""

    def __init__(self, raw, kind: str):
        super().__init__()
        self._raw, self._kind = raw, kind
        # bzip2 emits a block (up to 900 kB of text) once it has read all of it, and
        # reads on while it emits: compressed and text bytes are paired when a block's
        # text is all out, and small reads keep what was read past that block small.
        self._piece = 1 << 16 if kind == "gz" else 1 << 13
        self._input = b""
        self._read = self._produced = 0
        self._mark = (0, 0)  # (compressed bytes consumed, text bytes produced)
        self._emitting = False
        self._d = self._decompressor()

    def _decompressor(self):
        return zlib.decompressobj(16 + zlib.MAX_WBITS) if self._kind == "gz" else bz2.BZ2Decompressor()

    def readable(self) -> bool:
        return True

    def _more(self) -> bytes:
        data = self._raw.read(self._piece)
        self._read += len(data)
        return data

    def _settle(self) -> None:
        """bzip2: the text of every block read so far is out; pair the counts."""
        if self._emitting:
            self._mark, self._emitting = (self._read, self._produced), False

    def readinto(self, buffer) -> int:
        while True:
            d = self._d
            if d.eof:  # the next member (stream), if any
                self._input = d.unused_data + self._input or self._more()
                if not self._input:
                    self._settle()
                    return 0
                self._d = d = self._decompressor()
            if self._kind == "gz" or d.needs_input:
                self._settle()
                self._input = self._input or self._more()
                if not self._input:
                    return 0  # a truncated file: the pipeline's reader says so
                out = d.decompress(self._input, len(buffer))
                self._input = d.unconsumed_tail if self._kind == "gz" else b""
            else:
                out = d.decompress(b"", len(buffer))
            if out:
                self._produced += len(out)
                if self._kind == "gz":  # zlib says exactly what it has not consumed
                    held = len(self._input) + (len(d.unused_data) if d.eof else 0)
                    self._mark = (self._read - held, self._produced)
                else:
                    self._emitting = True
                buffer[:len(out)] = out
                return len(out)

    def ratio(self) -> float:
        """Text bytes per compressed byte, so far."""
        consumed, produced = self._mark if self._mark[0] else (self._read, self._produced)
        return produced / consumed if consumed and produced else _DEFAULT_RATIO


__all__ = ["SAMPLE_ROWS", "SourceSize", "measure_arrays", "measure_source"]
