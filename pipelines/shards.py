"""TFRecord shard files: their names and their framing.

A shard is ``<dataset>/<split>/<name>-SSSSS-of-NNNNN.tfrecord[.gz]``, the naming of
Beam's `WriteToTFRecord` (template `SHARD_TEMPLATE`) and of tensorflow-datasets. The
TFRecord framing of a record is an 8-byte little-endian length, the masked CRC-32C of
those 8 bytes, the data, and the masked CRC-32C of the data. It lives here, once, without
TensorFlow: record by record (`write_record`, `read_records`), and many records at once
with NumPy (`frame_records`), which both writers and the TFDS source use. The read side only needs the names (`tf_compression_type`).
"""

from __future__ import annotations

import re
import struct
from typing import BinaryIO, Iterator

import numpy as np

SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.tfrecord(\.gz)?")


def shard_file(split: str, name: str, index: int, num_shards: int, compression: str) -> str:
    """A shard's path relative to the dataset directory (the name Beam's
    `WriteToTFRecord` gives it with `SHARD_TEMPLATE`).

    Example:
        >>> shard_file("train", "flights", 2, 8, "gzip")
        'train/flights-00002-of-00008.tfrecord.gz'
    """
    return f"{split}/{name}-{index:05d}-of-{num_shards:05d}{shard_suffix(compression)}"


def shard_suffix(compression: str) -> str:
    """File name suffix for a compression (``none`` or ``gzip``)."""
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def tf_compression_type(compression: str) -> str:
    """The `compression_type` argument of `tf.data.TFRecordDataset`."""
    return "GZIP" if compression == "gzip" else ""


def is_shard_of(file_name: str, name: str) -> bool:
    """Whether a file name is a shard of the dataset ``name`` (any count, any compression)."""
    return file_name.startswith(name + "-") and _SHARD_RE.fullmatch(file_name[len(name):]) is not None


def masked_crc(data: bytes) -> int:
    """The masked CRC-32C that TFRecord framing stores (as TensorFlow's `crc32c::Mask`)."""
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def write_record(stream: BinaryIO, data: bytes) -> None:
    """Append one record, TFRecord-framed, to a binary stream (a file, `io.BytesIO`).

    What `tf.io.TFRecordWriter.write` writes, without TensorFlow; compression is the
    stream's business (a gzip stream gives a ``GZIP`` TFRecord file).

    Example:
        >>> import io
        >>> buf = io.BytesIO()
        >>> write_record(buf, b"abc")
        >>> len(buf.getvalue()), list(read_records(io.BytesIO(buf.getvalue())))
        (19, [b'abc'])
    """
    length = struct.pack("<Q", len(data))
    stream.write(length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data)))


def frame_records(buffer: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Many records, TFRecord-framed at once: the bytes `write_record` writes for each
    record in turn, as one uint8 array. The records are one buffer and ``n + 1`` offsets
    (as `example_encoder.encode_examples_buffer` gives them).

    The data's CRC-32C is computed with NumPy when every record has the same length
    (`crc32c_rows`), else record by record (google-crc32c); a length's CRC once per
    distinct length.

    Example:
        >>> import io
        >>> buf = io.BytesIO()
        >>> for r in (b"ab", b"", b"xyz"):
        ...     write_record(buf, r)
        >>> frame_records(np.frombuffer(b"abxyz", dtype=np.uint8), np.array([0, 2, 2, 5])).tobytes() == buf.getvalue()
        True
    """
    from tfstream.transforms.example_encoder import Pieces

    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.diff(offsets)
    n = lengths.size
    if not n:
        return np.empty(0, dtype=np.uint8)
    data = buffer[offsets[0]:offsets[-1]]
    if (lengths == lengths[0]).all() and lengths[0]:
        crcs = crc32c_rows(data.reshape(n, int(lengths[0])))
    else:
        import google_crc32c

        raw, bounds = data.tobytes(), (offsets - offsets[0]).tolist()
        crcs = np.fromiter((google_crc32c.value(raw[a:b]) for a, b in zip(bounds[:-1], bounds[1:])),
                           dtype=np.uint32, count=n)
    distinct, which = np.unique(lengths, return_inverse=True)
    length_crcs = np.array([masked_crc(struct.pack("<Q", int(v))) for v in distinct], dtype="<u4")[which]
    fours = np.full(n, 4)
    pieces = Pieces(n)
    pieces.var(lengths.astype("<u8").view(np.uint8), np.full(n, 8))
    pieces.var(length_crcs.view(np.uint8), fours)
    pieces.var(data, lengths)
    pieces.var(_mask(crcs).astype("<u4").view(np.uint8), fours)
    return pieces.join()[0]


def take_records(buffer: np.ndarray, offsets: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records ``rows`` (indices, in that order) of a batch given as one buffer and
    ``n + 1`` offsets: ``(their buffer, their n + 1 offsets)``.

    Example:
        >>> buf, off = take_records(np.frombuffer(b"abcdef", dtype=np.uint8), np.array([0, 1, 3, 6]), np.array([2, 0]))
        >>> buf.tobytes(), off.tolist()
        (b'defa', [0, 3, 4])
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    lengths = np.diff(offsets)
    if rows.size and (lengths == lengths[0]).all():  # one length: a reshape
        size = int(lengths[0])
        new = np.arange(rows.size + 1, dtype=np.int64) * size
        return buffer[offsets[0]:offsets[-1]].reshape(lengths.size, size)[rows].reshape(-1), new
    return gather_records(buffer, offsets[:-1][rows], lengths[rows])


def gather_records(buffer: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The records that start at ``starts`` in ``buffer`` with ``lengths`` bytes each,
    in that order: ``(their buffer, their n + 1 offsets)``.

    Example:
        >>> buf, off = gather_records(np.frombuffer(b"abcdef", dtype=np.uint8), np.array([4, 0]), np.array([2, 1]))
        >>> buf.tobytes(), off.tolist()
        (b'efa', [0, 2, 3])
    """
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    new = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=new[1:])
    if not lengths.size:
        return np.empty(0, dtype=np.uint8), new
    if (lengths == lengths[0]).all() and lengths[0]:  # one length: rows of a sliding view (no copy of it)
        windows = np.lib.stride_tricks.sliding_window_view(buffer, int(lengths[0]))
        return windows[starts].reshape(-1), new
    return buffer[np.repeat(starts - new[:-1], lengths) + np.arange(int(new[-1]))], new


def _mask(crc: np.ndarray) -> np.ndarray:
    """`masked_crc`'s mask, vectorized."""
    crc = crc.astype(np.uint32)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _crc32c_tables() -> list[np.ndarray]:
    """CRC-32C (Castagnoli, reflected 0x82F63B78) lookup tables for slicing by 4."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> np.uint32(1)) ^ np.uint32(0x82F63B78), t >> np.uint32(1)).astype(np.uint32)
    tables = [t]
    for _ in range(3):
        tables.append((tables[-1] >> np.uint32(8)) ^ t[tables[-1] & np.uint32(0xFF)])
    return tables


_CRC_TABLES = _crc32c_tables()


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """The CRC-32C of each row of a ``(n, length)`` uint8 matrix (``google_crc32c.value``
    of each row's bytes), four bytes a step across all rows at once.

    Example:
        >>> import google_crc32c
        >>> crc32c_rows(np.frombuffer(b"123456789" * 2, dtype=np.uint8).reshape(2, 9)).tolist()
        [3808858755, 3808858755]
        >>> google_crc32c.value(b"123456789")
        3808858755
    """
    t0, t1, t2, t3 = _CRC_TABLES
    n, length = rows.shape
    whole = length // 4 * 4
    crc = np.full(n, 0xFFFFFFFF, dtype=np.uint32)
    if whole:
        for word in np.ascontiguousarray(rows[:, :whole]).view("<u4").T:
            x = crc ^ word
            crc = t3[x & 0xFF] ^ t2[(x >> np.uint32(8)) & 0xFF] ^ t1[(x >> np.uint32(16)) & 0xFF] ^ t0[x >> np.uint32(24)]
    for col in rows[:, whole:].T:
        crc = t0[(crc ^ col) & 0xFF] ^ (crc >> np.uint32(8))
    return crc ^ np.uint32(0xFFFFFFFF)


class RecordError(ValueError):
    """A TFRecord stream that is truncated or fails its checksum."""


def read_records(stream: BinaryIO, name: str = "<stream>") -> Iterator[bytes]:
    """The records of an uncompressed TFRecord stream, checksums verified, without TensorFlow.

    Args:
        stream: a binary stream positioned at the first record.
        name: how the stream is named in errors (its path).

    Raises:
        RecordError: a truncated stream, or a record whose data fails its checksum.
    """
    n = 0
    while True:
        header = stream.read(12)
        if not header:
            return
        length = struct.unpack("<Q", header[:8])[0] if len(header) == 12 else -1
        data = stream.read(length) if length >= 0 else b""
        crc = stream.read(4)
        if length < 0 or len(data) < length or len(crc) < 4:
            raise RecordError(f"{name}: truncated TFRecord file after {n} records")
        if struct.unpack("<I", crc)[0] != masked_crc(data):
            raise RecordError(f"{name}: record {n + 1}: checksum mismatch (a corrupt file)")
        n += 1
        yield data
