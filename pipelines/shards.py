"""TFRecord shard files: their names and their framing.

A shard is ``<dataset>/<split>/<name>-SSSSS-of-NNNNN.tfrecord[.gz]``, the naming of
Beam's `WriteToTFRecord` (template `SHARD_TEMPLATE`) and of tensorflow-datasets. The
TFRecord framing of a record is an 8-byte little-endian length, the masked CRC-32C of
those 8 bytes, the data, and the masked CRC-32C of the data. It lives here, once, in pure
Python (`write_record`, `read_records`): both writers and the TFDS source use it without
TensorFlow. The read side only needs the names (`tf_compression_type`).
"""

from __future__ import annotations

import re
import struct
from typing import BinaryIO, Iterator

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
