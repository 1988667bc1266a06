"""TFRecord shard files: their names, and a description of each for the manifest.

A shard is ``<dataset>/<split>/<name>-SSSSS-of-NNNNN.tfrecord[.gz]``, the naming of
Beam's `WriteToTFRecord` and of tensorflow-datasets. `describe_shard` counts a shard's
records by walking the TFRecord framing (8-byte length, 4-byte CRC, data, 4-byte CRC), so
it needs neither TensorFlow nor a full parse, and runs on the Beam worker that wrote it.
"""

from __future__ import annotations

import gzip
import hashlib
import posixpath
import re
import struct
from typing import Any

SHARD_TEMPLATE = "-SSSSS-of-NNNNN"
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.tfrecord(\.gz)?")


def shard_suffix(compression: str) -> str:
    """File name suffix for a compression (``none`` or ``gzip``)."""
    return ".tfrecord.gz" if compression == "gzip" else ".tfrecord"


def tf_compression_type(compression: str) -> str:
    """The `compression_type` argument of `tf.data.TFRecordDataset`."""
    return "GZIP" if compression == "gzip" else ""


def is_shard_of(file_name: str, name: str) -> bool:
    """Whether a file name is a shard of the dataset ``name`` (any count, any compression)."""
    return file_name.startswith(name + "-") and _SHARD_RE.fullmatch(file_name[len(name):]) is not None


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
    rel = posixpath.relpath(path.replace("\\", "/"), root.replace("\\", "/")) if "://" not in path \
        else path[len(root.rstrip("/")) + 1:]
    return {
        "file": rel,
        "records": records,
        "bytes": hashed.bytes,
        "sha256": hashed.sha256.hexdigest(),
        "record_bytes": payload,
        "max_record_bytes": largest,
    }
