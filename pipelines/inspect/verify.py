"""Check a dataset's shard files against its manifest: what `tfstream verify` runs.

The manifest records each shard's record count, size and SHA-256 (see
`pipelines.write.sharding.describe_shard`). `verify` reads every shard once, streaming,
and recomputes them all, together with the TFRecord framing of every record (the masked
CRC-32C of its length and of its data, as `shards.masked_crc` computes it), for uncompressed and gzip
shards. A missing file, a size or hash that differs, a record that fails its CRC, a
truncated file and bytes after the last record are each reported with the file, and the
record and offset where the framing broke. `check_sizes` is the cheap check (one stat per
shard) that `tfstream inspect` and the trainer run first.

The results are typed (`VerifyResult`, `ShardResult`, `Problem`), so that a retraining
job or a test can act on them; ``result.check()`` raises `IntegrityError`, a
`ManifestError`, naming the files that fail.

Example:
    >>> result = verify(dataset_dir, ["eval"])
    >>> result.ok, [s.records == s.expected.records for s in result.shards]
    (True, [True])
    >>> check_sizes(load_manifest(dataset_dir)).ok
    True
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import struct
import time
import zlib
from typing import Iterable, Optional, Sequence, Union

import google_crc32c

from tfstream.pipelines import fs, progress
from tfstream.pipelines.manifest import Manifest, ManifestError, Shard, load_manifest
from tfstream.pipelines.tables import render_table, size

# The exit status of `tfstream verify` and `tfstream inspect` (and of `tfstream train`
# stopped by a shard that fails) when shard files do not match the manifest.
EXIT_MISMATCH = 3
# Bytes read from a shard file at a time: memory stays bounded by this plus the largest
# record, whatever the shard's size.
CHUNK_BYTES = 1 << 20
_FIX = "re-run `tfstream preprocess` to rewrite the dataset"


class IntegrityError(ManifestError):
    """Shard files that do not match the manifest: missing, resized, corrupt, truncated.

    Attributes:
        failed: the `ShardResult` of each shard that failed.
    """

    exit_code = EXIT_MISMATCH

    def __init__(self, message: str, failed: Sequence["ShardResult"] = ()):
        super().__init__(message)
        self.failed = tuple(failed)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One way a shard differs from its manifest entry.

    Attributes:
        kind: ``missing``, ``bytes``, ``sha256``, ``records``, ``crc`` (a record's length
            or data fails its CRC), ``truncated``, ``trailing`` (bytes after the last
            record) or ``gzip`` (a gzip stream that cannot be decompressed).
        detail: what was found, for people.
    """

    kind: str
    detail: str


@dataclasses.dataclass(frozen=True)
class ShardResult:
    """One shard, checked. ``records``, ``bytes`` and ``sha256`` are what the file holds
    (None when not measured: a missing file, or a cheap check)."""

    split: str
    path: str
    expected: Shard
    records: Optional[int] = None
    bytes: Optional[int] = None
    sha256: Optional[str] = None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def describe(self) -> str:
        """``<path>: <problem>; <problem>`` (or ``<path>: ok``)."""
        return f"{self.path}: " + ("; ".join(p.detail for p in self.problems) or "ok")

    def to_json(self) -> dict:
        return {"split": self.split, "file": self.expected.file, "path": self.path, "ok": self.ok,
                "records": self.records, "bytes": self.bytes, "sha256": self.sha256,
                "expected": {"records": self.expected.records, "bytes": self.expected.bytes,
                             "sha256": self.expected.sha256},
                "problems": [dataclasses.asdict(p) for p in self.problems]}


@dataclasses.dataclass(frozen=True)
class VerifyResult:
    """The shards of a dataset checked against its manifest.

    Attributes:
        dataset: the dataset directory.
        shards: one `ShardResult` per shard, in the manifest's order.
        full: whether the files were read (`verify`) or only their sizes checked
            (`check_sizes`).
        seconds: the time taken.
    """

    dataset: str
    shards: tuple[ShardResult, ...]
    full: bool
    seconds: float

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.shards)

    @property
    def failed(self) -> tuple[ShardResult, ...]:
        return tuple(s for s in self.shards if not s.ok)

    @property
    def bytes_read(self) -> int:
        return sum(s.bytes or 0 for s in self.shards) if self.full else 0

    def message(self) -> str:
        """The failed shards, one line each, and what to do (empty when all are ok)."""
        if self.ok:
            return ""
        lines = [f"{len(self.failed)} of {len(self.shards)} shard(s) do not match the manifest of {self.dataset}:"]
        lines += [f"  {s.describe()}" for s in self.failed]
        if self.full:
            lines.append(f"{_FIX} (a dataset is never patched in place)")
        else:
            lines.append(f"run `tfstream verify {self.dataset}` to check every shard's records and checksums, "
                         f"then {_FIX}")
        return "\n".join(lines)

    def check(self) -> "VerifyResult":
        """This result, when every shard matches.

        Raises:
            IntegrityError: a shard does not match (the message names each file).
        """
        if not self.ok:
            raise IntegrityError(self.message(), self.failed)
        return self

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "ok": self.ok, "full": self.full, "seconds": round(self.seconds, 3),
                "shards": [s.to_json() for s in self.shards]}


def _splits(manifest: Manifest, splits: Optional[Iterable[str]]) -> list[str]:
    return manifest.split_names if splits is None else [s for s in dict.fromkeys(splits) if s]


def _cheap(manifest: Manifest, split: str, shard: Shard, path: str) -> ShardResult:
    try:
        on_disk = fs.size(path)
    except FileNotFoundError:
        return ShardResult(split, path, shard, problems=(Problem("missing", "missing (listed in the manifest)"),))
    if on_disk != shard.bytes:
        return ShardResult(split, path, shard, bytes=on_disk, problems=(
            Problem("bytes", f"{on_disk} bytes on disk, {shard.bytes} in the manifest"),))
    return ShardResult(split, path, shard, bytes=on_disk)


def check_sizes(manifest: Union[Manifest, str], splits: Optional[Iterable[str]] = None) -> VerifyResult:
    """The cheap check: each shard of ``splits`` (default: all) exists with the size the
    manifest records (one stat per shard, no read)."""
    start = time.perf_counter()
    manifest = manifest if isinstance(manifest, Manifest) else load_manifest(manifest)
    results = []
    for split in _splits(manifest, splits):
        paths = manifest.shard_paths(split, check=False)
        results += [_cheap(manifest, split, shard, path) for shard, path in zip(manifest.split(split).shards, paths)]
    return VerifyResult(manifest.root, tuple(results), False, time.perf_counter() - start)


def verify(dataset: Union[Manifest, str], splits: Optional[Iterable[str]] = None) -> VerifyResult:
    """Read every shard of ``splits`` (default: all) once and check its record count,
    size, SHA-256 and every record's CRCs against the manifest.

    Args:
        dataset: the dataset directory, or its loaded `Manifest`.
        splits: the splits to check (default: every split).

    Returns:
        A `VerifyResult`; ``.check()`` raises `IntegrityError` when a shard fails.

    Raises:
        ManifestError: no manifest, an unreadable one, or an unknown split.
    """
    start = time.perf_counter()
    manifest = dataset if isinstance(dataset, Manifest) else load_manifest(dataset)
    results = []
    checked = _splits(manifest, splits)
    with progress.Progress("verify") as shown:
        shown.add(_BYTES, "bytes read", total=sum(s.bytes for n in checked for s in manifest.split(n).shards),
                  unit="bytes")
        for split in checked:
            shown.add(f"records[{split}]", f"records[{split}]", total=manifest.num_examples(split), unit="records")
        for split in checked:
            paths = manifest.shard_paths(split, check=False)
            for shard, path in zip(manifest.split(split).shards, paths):
                results.append(verify_shard(path, shard, manifest.compression, split=split))
                shown.advance(f"records[{split}]", results[-1].records or 0)
    return VerifyResult(manifest.root, tuple(results), True, time.perf_counter() - start)


_BYTES = "bytes"  # the progress counter of the bytes read


class _HashingRaw(io.RawIOBase):
    """The raw file, hashed and counted as it is read (the manifest's size and SHA-256 are
    of the file as stored: compressed, for gzip shards)."""

    def __init__(self, f):
        self._f = f
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha256.update(data)
        self.bytes += n
        progress.advance(_BYTES, n)
        return n

    def drain(self) -> None:
        while self._f is not None and self.read(CHUNK_BYTES):
            pass


class _StreamError(Exception):
    """A gzip stream that breaks: ``kind`` is a `Problem` kind."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class _Gunzip:
    """The uncompressed bytes of a gzip file (one member or more), read in pieces. Unlike
    `gzip.GzipFile`, which drops the bytes of a read that ends in an error, every byte
    before a fault is returned first, so the fault is found at its record; bytes after
    the last member that do not start another one are trailing garbage."""

    _MAGIC = b"\x1f\x8b"

    def __init__(self, raw):
        self.raw = raw
        self.inflate = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer, CRC-32 checked
        self.fault: Optional[_StreamError] = None

    def read(self, n: int) -> bytes:
        out, got = [], 0
        while got < n and self.fault is None:
            try:
                if self.inflate.eof:  # a member ended: another one, garbage, or the end
                    rest = self.inflate.unused_data + self.raw.read(len(self._MAGIC))
                    if not rest:
                        break
                    if not rest.startswith(self._MAGIC):
                        self.fault = _StreamError("trailing", "trailing garbage after the gzip stream")
                        break
                    self.inflate = zlib.decompressobj(wbits=31)
                    data = self.inflate.decompress(rest, n - got)
                else:
                    chunk = self.inflate.unconsumed_tail or self.raw.read(CHUNK_BYTES)
                    if not chunk:
                        self.fault = _StreamError("truncated", "truncated: the gzip stream ends early")
                        break
                    data = self.inflate.decompress(chunk, n - got)
            except zlib.error as e:
                self.fault = _StreamError("gzip", f"corrupt gzip stream ({e})")
                break
            out.append(data)
            got += len(data)
        if not out and self.fault is not None:
            raise self.fault
        return b"".join(out)


_MAX_FRAME = 16 + (2 << 30)


class _Frames:
    """The TFRecord framing of a stream, checked: counts records, finds the first
    broken frame. Reads `CHUNK_BYTES` at a time and parses records out of the buffer
    (one read call per record costs more than the checks themselves)."""

    def __init__(self, stream, expected_records: int):
        self.stream = stream
        self.expected = expected_records
        self.records = 0
        self.offset = 0  # of the next record, in the (uncompressed) TFRecord stream
        self.bad_data: list[int] = []
        self.problem: Optional[Problem] = None

    def run(self) -> None:
        buf, pos, eof = b"", 0, False
        unpack_len, unpack_crc = struct.Struct("<Q").unpack_from, struct.Struct("<I").unpack_from
        # `shards.masked_crc`, inlined: this loop runs once per record (the function imports
        # google_crc32c on each call, which costs twice the CRC of a small record).
        value = google_crc32c.value
        while True:
            if len(buf) - pos < 12 and not eof:
                buf, pos, eof = self._refill(buf, pos, 12)
            left = len(buf) - pos
            if left == 0:
                return
            if left < 12:
                return self._end("a partial record header")
            crc = value(buf[pos:pos + 8])
            if (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack_crc(buf, pos + 8)[0]:
                return self._end("a record length that fails its CRC")
            need = 12 + unpack_len(buf, pos)[0] + 4
            if need > _MAX_FRAME:  # a record is one protocol buffer: at most 2 GiB
                return self._end("a record length over 2 GiB, though its CRC matches")
            if left < need and not eof:
                buf, pos, eof = self._refill(buf, pos, need)
                left = len(buf) - pos
            if left < need:
                return self._end(f"a partial record ({left} of {need} bytes)")
            crc = value(buf[pos + 12:pos + need - 4])
            if (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF != unpack_crc(buf, pos + need - 4)[0]:
                self.bad_data.append(self.records)
            self.records += 1
            self.offset += need
            pos += need

    def _refill(self, buf: bytes, pos: int, need: int) -> tuple[bytes, int, bool]:
        """The unread bytes and at least ``need`` more, unless the stream ends first."""
        want = max(CHUNK_BYTES, need - (len(buf) - pos))
        more = self.stream.read(want)  # (buffered streams return less only at the end)
        return buf[pos:] + more, 0, len(more) < want

    def _end(self, what: str) -> None:
        """The framing broke at record ``self.records``: past the manifest's last record
        it is trailing garbage, else the file is truncated (a partial record at the end)
        or corrupt (a length that fails its CRC)."""
        at = f"record {self.records} (offset {self.offset})"
        if self.records >= self.expected:
            self.problem = Problem("trailing", f"trailing garbage after the last record, from offset {self.offset}")
        elif "CRC" not in what:
            self.problem = Problem("truncated", f"truncated at {at}: {what} ends the file")
        else:
            self.problem = Problem("crc", f"CRC mismatch at {at}: {what}; the records after it cannot be read")


def verify_shard(path: str, expected: Shard, compression: str = "none", *, split: str = "") -> ShardResult:
    """Check one shard file against its manifest entry, in one streaming pass.

    Args:
        path: the shard file (local or on a Beam file system).
        expected: its manifest entry (`Split.shards`).
        compression: ``none`` or ``gzip`` (`Manifest.compression`).
        split: the split it belongs to (for the report).
    """
    try:
        f = fs.open_read(path)
    except FileNotFoundError:
        return ShardResult(split, path, expected, problems=(Problem("missing", "missing (listed in the manifest)"),))
    problems = []
    with f:
        raw = _HashingRaw(f)
        buffered = io.BufferedReader(raw, CHUNK_BYTES)
        stream = _Gunzip(buffered) if compression == "gzip" else buffered
        frames = _Frames(stream, expected.records)
        try:
            frames.run()
            fault = getattr(stream, "fault", None)  # found by the read that ended the stream
        except _StreamError as e:
            fault = e
        if fault is not None:  # it explains a partial record at the end better than the framing does
            where = f"record {frames.records} (offset {frames.offset} uncompressed)"
            if fault.kind == "trailing" and frames.records >= expected.records:
                frames.problem = Problem("trailing", f"{fault} (after {where})")
            else:
                frames.problem = Problem("gzip" if fault.kind == "trailing" else fault.kind, f"{fault}, in {where}")
        buffered.read()
        raw.drain()
    if frames.problem is not None and frames.problem.kind == "trailing" and compression != "gzip":
        frames.problem = Problem("trailing", f"trailing garbage: {raw.bytes - frames.offset} byte(s) after the "
                                             f"last record (offset {frames.offset})")
    if frames.problem is not None:
        problems.append(frames.problem)
    if frames.bad_data:
        first = frames.bad_data[0]
        more = f" and {len(frames.bad_data) - 1} more record(s)" if len(frames.bad_data) > 1 else ""
        problems.append(Problem("crc", f"CRC mismatch in the data of record {first}{more}"))
    if frames.records != expected.records:
        counted = f"{frames.records}+" if frames.problem is not None and frames.problem.kind != "trailing" \
            else str(frames.records)
        problems.append(Problem("records", f"{counted} records read, {expected.records} in the manifest"))
    if raw.bytes != expected.bytes:
        problems.append(Problem("bytes", f"{raw.bytes} bytes, {expected.bytes} in the manifest"))
    digest = raw.sha256.hexdigest()
    if digest != expected.sha256:
        problems.append(Problem("sha256", f"sha256 {digest[:12]}..., {expected.sha256[:12]}... in the manifest"))
    return ShardResult(split, path, expected, frames.records, raw.bytes, digest, tuple(problems))


def format_result(result: VerifyResult, *, terminal: Optional[bool] = None) -> str:
    """`VerifyResult` as a table (one row per shard) and a closing line: what
    `tfstream verify` prints."""
    rows = [[s.split, s.expected.file, s.records, s.expected.records, size(s.bytes) if s.bytes is not None else None,
             "ok" if s.ok else "; ".join(p.detail for p in s.problems)] for s in result.shards]
    table = render_table(["split", "file", "records", "manifest", "bytes", "status"], rows, terminal=terminal)
    mb = result.bytes_read / 1e6
    speed = f", {mb / result.seconds:.0f} MB/s" if result.seconds > 0 and mb else ""
    if result.ok:
        tail = (f"all {len(result.shards)} shard(s) match the manifest (records, bytes, sha256, CRCs; "
                f"{mb:.1f} MB read in {result.seconds:.1f} s{speed})")
    else:
        tail = f"{len(result.failed)} of {len(result.shards)} shard(s) do not match the manifest: {_FIX}"
    return f"{table}\n\n{tail}"
