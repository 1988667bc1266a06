"""Shard writing, shared by both writers: which shard a record goes to, the shard files
themselves, and their description for the manifest.

Like tensorflow-datasets, records are shuffled at write time: a record's keyed hash
(`record_hashes`, keyed by the dataset's name) picks its shard (``hash % num_shards``;
the count: `shard_plan`), and every shard is stored sorted by that hash. So every shard is a random sample of the
source, in a random order, even when the source is sorted (by date, by class), and a
rerun writes the same shards, byte for byte, on any runner and with either writer
(`beam_pipeline.WriteShards`, `arrays.write_arrays`). `describe_shard` counts a written
shard's records, without a full parse, and fingerprints it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import itertools
import posixpath
import struct
import uuid
from typing import Any, Iterable, Iterator, Optional, Sequence

import numpy as np

from tfstream.pipelines import fs, progress
from tfstream.pipelines.shards import frame_records
from tfstream.transforms.example_encoder import encode_examples_buffer, rows_to_columns
from tfstream.transforms.schema import Schema

# The progress counters of a preprocessing run (`pipelines.progress`; `run.progress_tasks`).
ROWS_READ, SHARDS_DONE = "read", "shards"


def rows_written(split: str) -> str:
    """The progress counter of the rows written to ``split``."""
    return f"written[{split}]"

# Records are framed into a buffer and written to the shard file when it is this full:
# few, large writes (few calls into zlib for gzip shards).
WRITE_BUFFER_BYTES = 1 << 20


def record_hashes(buffer: np.ndarray, offsets: np.ndarray, key: bytes) -> np.ndarray:
    """Each record's keyed 64-bit hash: it picks the record's shard (``hash % num_shards``)
    and its place within the shard (records sorted by ``(hash, record)``).

    Both writers (`beam_pipeline`, `arrays.write_arrays`) hash the same way, so a record
    lands in the same shard, at the same place, whichever writes it. The records are given
    as `example_encoder.encode_examples_buffer` gives them: one uint8 buffer, and ``n + 1``
    offsets. The hash, vectorized with NumPy over records of the same word count (a
    chunk's records mostly share one):

    * ``seed`` = the first 8 bytes (little-endian) of BLAKE2b-64 of ``key`` (the dataset's
      name, at most 64 bytes); ``h = fmix64(seed ^ (length * 0x9E3779B97F4A7C15))``;
    * then, for each 8-byte little-endian word of the record (the last one zero-padded):
      ``h = fmix64(h ^ word)``. ``fmix64`` is MurmurHash3's 64-bit finalizer, a bijection:
      records that differ in one word, or in length, never share a hash on that account.

    It is a shuffle key, not a cryptographic hash (keyed BLAKE2b per record cost 0.7 µs a
    record, this 0.06 µs). Two different records sharing a hash (about ``n**2 / 2**65``)
    are still ordered, by their bytes.

    Example:
        >>> buf = np.frombuffer(b"abcdefghij", dtype=np.uint8)
        >>> h = record_hashes(buf, np.array([0, 3, 10, 10]), b"ds")
        >>> h.dtype, len(set(h.tolist())), int(h[1]) == record_hash(b"defghij", b"ds")
        (dtype('uint64'), 3, True)
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    n = lengths.size
    out = np.empty(n, dtype=np.uint64)
    if not n:
        return out
    seed = np.uint64(int.from_bytes(hashlib.blake2b(key[:64], digest_size=8).digest(), "little"))
    words_of = (lengths + 7) // 8
    with np.errstate(over="ignore"):
        for w in np.unique(words_of).tolist():
            rows = np.flatnonzero(words_of == w)
            h = _fmix64(seed ^ (lengths[rows].astype(np.uint64) * _GOLDEN))
            if w:
                padded = np.zeros((rows.size, 8 * w), dtype=np.uint8)
                if rows.size == n and (lengths == lengths[0]).all():  # one length: a reshape
                    padded[:, :lengths[0]] = buffer[:offsets[-1]].reshape(n, int(lengths[0]))
                else:
                    span = np.arange(8 * w)
                    inside = span[None, :] < lengths[rows, None]
                    padded[inside] = buffer[(offsets[rows, None] + span[None, :])[inside]]
                for word in np.ascontiguousarray(padded.view("<u8").T):
                    h = _fmix64(h ^ word)
            out[rows] = h
    return out


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FMIX = (np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _fmix64(h: np.ndarray) -> np.ndarray:
    shift, m1, m2 = _FMIX
    h = h ^ (h >> shift)
    h = h * m1
    h = h ^ (h >> shift)
    h = h * m2
    return h ^ (h >> shift)


def record_hash(record: bytes, key: bytes) -> int:
    """`record_hashes` of one record."""
    buf = np.frombuffer(record, dtype=np.uint8)
    return int(record_hashes(buf, np.array([0, len(record)]), key)[0])


def encode_batch(rows: Sequence[dict[str, Any]], schema: Schema, key: bytes, num_shards: int
                  ) -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
    """A batch of typed rows → ``(shard, [(hash, record), ...])``, one pair per shard
    that receives records from this batch. The batch is encoded at once
    (`example_encoder.encode_examples_buffer`: the bytes of `codecs.encode_example`,
    several times faster) and hashed at once (`record_hashes`)."""
    if not rows:
        return iter(())
    buffer, offsets = encode_examples_buffer(rows_to_columns(rows, schema), schema, len(rows))
    hashes = record_hashes(buffer, offsets, key)
    data, bounds = buffer.tobytes(), offsets.tolist()
    by_shard: dict[int, list[tuple[int, bytes]]] = {}
    for i, (h, shard) in enumerate(zip(hashes.tolist(), (hashes % np.uint64(num_shards)).tolist())):
        by_shard.setdefault(shard, []).append((h, data[bounds[i]:bounds[i + 1]]))
    return iter(by_shard.items())


# A run file: ``(hash, record)`` pairs sorted by ``(hash, record)``, each framed as an
# 8-byte big-endian hash, a 4-byte little-endian length, then the record.
_RUN_HEADER = struct.Struct(">QI")
# Records buffered per bundle before they are sorted and spilled as runs: bounds a
# writer's memory whatever the size of the data (`RunSpiller`).
SPILL_BYTES = 32 << 20
# Read buffer per run while merging, and the most runs merged at once (`merge_runs`).
RUN_READ_BUFFER = 1 << 20
MAX_OPEN_RUNS = 64


def write_run(path: str, pairs: Iterable[tuple[int, bytes]]) -> str:
    """Write sorted ``(hash, record)`` pairs as a run file (any Beam file system); returns ``path``."""
    from apache_beam.io.filesystems import FileSystems

    def frame(buf, pair):
        buf.write(_RUN_HEADER.pack(pair[0], len(pair[1])))
        buf.write(pair[1])

    with FileSystems.create(path) as f:
        _write_buffered(f, pairs, frame, WRITE_BUFFER_BYTES)
    return path


def _write_buffered(f, items: Iterable[Any], frame, buffer_bytes: int) -> None:
    """Frame each item into a buffer (``frame(buffer, item)``) and write the buffer to
    ``f`` whenever it holds ``buffer_bytes``: few, large writes."""
    buf = io.BytesIO()
    for item in items:
        frame(buf, item)
        if buf.tell() >= buffer_bytes:
            f.write(buf.getbuffer())
            buf.seek(0)
            buf.truncate()
    f.write(buf.getbuffer())


def read_run(path: str) -> Iterator[tuple[int, bytes]]:
    """The ``(hash, record)`` pairs of a run file, in order, streamed."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as raw:
        f = io.BufferedReader(raw, RUN_READ_BUFFER)
        while True:
            header = f.read(_RUN_HEADER.size)
            if not header:
                return
            if len(header) < _RUN_HEADER.size:
                raise ValueError(f"{path}: truncated run file")
            h, length = _RUN_HEADER.unpack(header)
            record = f.read(length)
            if len(record) < length:
                raise ValueError(f"{path}: truncated run file")
            yield h, record


class RunSpiller:
    """Records of many shards → sorted run files, holding at most about ``limit`` bytes
    of records at once: when the buffer is full, each shard's buffered records are
    sorted by ``(hash, record)`` and written as one run under ``folder/<shard>/``. A
    shard file is then the k-way merge of its runs (`merge_runs`): the same order as
    sorting all its records at once, so the same bytes, without ever holding a shard.

    Example:
        >>> spiller = RunSpiller(str(tmp_path), limit=200)  # three records of 20 bytes fill it
        >>> runs = [r for h in (5, 3, 9, 3) for r in spiller.add(h % 2, h, bytes([h]) * 20)] + list(spiller.flush())
        >>> [shard for shard, _ in runs]
        [1, 1]
        >>> [h for h, _ in merge_runs(path for _, path in runs)]
        [3, 3, 5, 9]
    """

    def __init__(self, folder: str, limit: int = SPILL_BYTES):
        self._folder, self._limit = folder, limit
        self._buffers: dict[int, list[tuple[int, bytes]]] = {}
        self._size = 0

    def add(self, shard: int, h: int, record: bytes) -> Iterator[tuple[int, str]]:
        """Buffer one record; yields the ``(shard, run path)`` of any run written."""
        self._buffers.setdefault(shard, []).append((h, record))
        self._size += len(record) + 64  # the record, and about what a tuple and an int cost
        if self._size >= self._limit:
            yield from self.flush()

    def flush(self) -> Iterator[tuple[int, str]]:
        """Spill everything buffered; yields ``(shard, run path)`` per run written."""
        buffers, self._buffers, self._size = self._buffers, {}, 0
        for shard, pairs in sorted(buffers.items()):
            pairs.sort()
            yield shard, write_run(fs.join(self._folder, f"{shard:05d}", f"{uuid.uuid4().hex}.run"), pairs)


def merge_runs(paths: Iterable[str], *, fan_in: Optional[int] = None) -> Iterator[tuple[int, bytes]]:
    """The k-way merge of sorted run files by ``(hash, record)``, streamed (one read
    buffer per open run). More than ``fan_in`` runs are first merged in groups into
    intermediate runs beside them, pass after pass, so that no more than ``fan_in``
    (default `MAX_OPEN_RUNS`) files
    are open at once (file-descriptor limits: 256 on macOS); the order, and so the
    bytes, are the same.

    Example:
        >>> runs = [write_run(str(tmp_path / f"{i}.run"), [(h, b"") for h in sorted({i, 7 * i % 5})])
        ...         for i in range(5)]
        >>> [h for h, _ in merge_runs(runs, fan_in=2)] == sorted(h for i in range(5) for h in {i, 7 * i % 5})
        True
    """
    import heapq

    fan_in = fan_in or MAX_OPEN_RUNS
    paths = sorted(paths)
    while len(paths) > fan_in:
        merged = []
        for start in range(0, len(paths), fan_in):
            group = paths[start:start + fan_in]
            folder = group[0].rsplit("/", 1)[0]
            merged.append(write_run(fs.join(folder, f"merged-{uuid.uuid4().hex}.run"),
                                    heapq.merge(*(read_run(p) for p in group))))
        paths = merged
    return heapq.merge(*(read_run(p) for p in paths))


# Records framed and written at once (`write_shard`, `record_batches`): at most this many,
# and about this many bytes (framing a batch of records of different lengths indexes
# every byte: 8 bytes of index a byte, so 1 MiB of records costs 8 MiB at most).
FRAME_RECORDS = 65536
FRAME_BYTES = 1 << 20


def write_shard(path: str, batches: Iterable[tuple[np.ndarray, np.ndarray]], compression: str,
                root: str) -> dict[str, Any]:
    """Write records, in the order given, TFRecord-framed, as the shard file ``path``
    (local or any Beam file system, gzip-compressed with ``compression: gzip``), and
    describe it (`shard_description`; the file named relative to ``root``).

    Args:
        batches: the records, in batches of ``(one uint8 buffer, n + 1 offsets)``, as
            `example_encoder.encode_examples_buffer` and `record_batches` give them; each
            batch is framed at once (`shards.frame_records`).

    An uncompressed shard is described from the bytes written, without reading it back; a
    gzip one is read back (`describe_shard`). See `replacing` for how the file appears.
    """
    sha, size, records, payload, largest = hashlib.sha256(), 0, 0, 0, 0
    with replacing(path, compression) as f:
        for buffer, offsets in batches:
            framed = frame_records(buffer, offsets)
            f.write(framed.data)
            sha.update(framed.data)
            size += framed.nbytes
            lengths = np.diff(offsets)
            records, payload = records + lengths.size, payload + int(lengths.sum())
            largest = max(largest, int(lengths.max(initial=0)))
    progress.advance(SHARDS_DONE)
    if compression != "none":  # the file holds other bytes than the framed records
        return describe_shard(path, compression, root)
    return shard_description(path, root, records, size, sha.hexdigest(), payload, largest)


def record_batches(records: Iterable[bytes], size: int = FRAME_RECORDS,
                   max_bytes: int = FRAME_BYTES) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Records, one at a time → batches of at most ``size`` records and about
    ``max_bytes`` bytes, each as ``(one uint8 buffer, n + 1 offsets)``.

    Example:
        >>> [(b.tobytes(), o.tolist()) for b, o in record_batches([b"ab", b"", b"c"], size=2)]
        [(b'ab', [0, 2, 2]), (b'c', [0, 1])]
    """
    batch: list[bytes] = []
    held = 0
    for record in itertools.chain(records, [None]):
        if record is not None:
            batch.append(record)
            held += len(record)
        if batch and (len(batch) == size or held >= max_bytes or record is None):
            offsets = np.zeros(len(batch) + 1, dtype=np.int64)
            np.cumsum([len(r) for r in batch], out=offsets[1:])
            yield np.frombuffer(b"".join(batch), dtype=np.uint8), offsets
            batch, held = [], 0


def byte_batches(lengths: np.ndarray, size: int = FRAME_RECORDS, max_bytes: int = FRAME_BYTES) -> Iterator[slice]:
    """Consecutive slices of records of these ``lengths``: at most ``size`` records and
    about ``max_bytes`` bytes each (at least one record).

    Example:
        >>> [(s.start, s.stop) for s in byte_batches(np.array([5, 5, 20, 1, 1]), size=10, max_bytes=10)]
        [(0, 2), (2, 3), (3, 5)]
    """
    ends = np.cumsum(lengths)
    start = 0
    while start < len(lengths):
        base = ends[start - 1] if start else 0
        stop = int(np.searchsorted(ends, base + max_bytes, side="left")) + 1
        stop = min(max(stop, start + 1), start + size, len(lengths))
        yield slice(start, stop)
        start = stop


@contextlib.contextmanager
def replacing(path: str, compression: str) -> Iterator[Any]:
    """A shard file open for writing (compressed with ``compression: gzip``), that
    appears at ``path`` whole when the block ends.

    The file is written under a temporary name, then renamed over ``path``: two attempts
    at the same bundle (a retry, a speculative copy on Spark, Flink or Dataflow) never
    write into one file at once, the last rename of identical bytes wins, and a reader
    never sees a half-written shard. The rename is Beam's: this runs on the worker,
    local or remote (publishing's `fs.rename` is the driver's).
    """
    from apache_beam.io.filesystem import CompressionTypes
    from apache_beam.io.filesystems import FileSystems

    kind = CompressionTypes.GZIP if compression == "gzip" else CompressionTypes.UNCOMPRESSED
    temp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    with FileSystems.create(temp, compression_type=kind) as f:
        yield f
    if fs.is_remote(path) and FileSystems.exists(path):  # an object store's rename does not replace
        FileSystems.delete([path])
    FileSystems.rename([temp], [path])


class _HashingReader:
    """A read-only stream that hashes and counts the raw bytes read through it."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self.sha256.update(data)
        self.bytes += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def describe_shard(path: str, compression: str, root: str) -> dict[str, Any]:
    """Count the records of one shard and fingerprint it.

    Args:
        path: the shard file.
        compression: ``none`` or ``gzip``.
        root: the dataset directory; the description names the file relative to it.

    Returns:
        ``{"file", "records", "bytes", "sha256", "record_bytes", "max_record_bytes"}``
        where ``bytes`` is the file size and ``record_bytes`` the sum of the
        uncompressed record sizes.

    Raises:
        ValueError: the file is not a whole TFRecord file (truncated).
    """
    from apache_beam.io.filesystems import FileSystems

    records = payload = largest = 0
    with FileSystems.open(path, compression_type="uncompressed") as raw:
        hashed = _HashingReader(raw)
        stream = gzip.GzipFile(fileobj=hashed, mode="rb") if compression == "gzip" else hashed
        while True:
            header = stream.read(12)
            if not header:
                break
            if len(header) < 12:
                raise ValueError(f"{path}: truncated TFRecord header after {records} records")
            (length,) = struct.unpack("<Q", header[:8])
            body = stream.read(length + 4)
            if len(body) < length + 4:
                raise ValueError(f"{path}: truncated TFRecord body after {records} records")
            records += 1
            payload += length
            largest = max(largest, length)
        hashed.drain()
    return shard_description(path, root, records, hashed.bytes, hashed.sha256.hexdigest(), payload, largest)


def shard_description(path: str, root: str, records: int, size: int, sha256: str, record_bytes: int,
                      max_record_bytes: int) -> dict[str, Any]:
    """A shard's entry in the manifest (what `describe_shard` returns), the file named
    relative to the dataset directory ``root``."""
    rel = posixpath.relpath(path.replace("\\", "/"), root.replace("\\", "/")) if "://" not in path \
        else path[len(root.rstrip("/")) + 1:]
    return {"file": rel, "records": records, "bytes": size, "sha256": sha256,
            "record_bytes": record_bytes, "max_record_bytes": max_record_bytes}

