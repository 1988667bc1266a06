"""The shard files of `write_arrays`: every split's shards, written with bounded memory
in two steps (`ShardWriters`), in the order and with the bytes of the Beam writer
(`beam_pipeline.WriteShards`): records placed by `sharding.record_hashes`, each shard
sorted by ``(hash, record)``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any, Mapping

import numpy as np

from tfstream.pipelines import fs, progress
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.shards import gather_records, shard_file, take_records
from tfstream.pipelines.write.sharding import FRAME_RECORDS, byte_batches, record_hashes, rows_written, write_shard

# A shard's buffer is written out when it holds this much: few, large writes (and few
# calls into zlib for gzip shards), and a small buffer per shard; with many shards, less
# each, so that all buffers together stay near _BUFFERS_BYTES.
_FLUSH_BYTES = 1 << 20
_MIN_FLUSH_BYTES = 64 << 10
_BUFFERS_BYTES = 64 << 20

class ShardWriters:
    """The shards of every split, written with bounded memory in two steps.

    `write_encoded` hashes a batch of records (`sharding.record_hashes`) and buffers each
    shard's part; a full buffer is appended to the shard's temporary file as one block
    (its count, hashes, lengths, then the records), unsorted. `close` reads each shard's
    blocks back, sorts its records by ``(hash, record)`` (the Beam writer's order: the
    reader's block shuffle relies on every shard being stored in a random order, also
    when the arrays are sorted by class or date), frames them (`shards.frame_records`)
    and writes the shard (`sharding.replacing`), describing it from what it wrote.
    Memory: the buffers, then two shards' records at a time (written in two threads).
    """

    def __init__(self, config: JobConfig, staging: str, num_shards: Mapping[str, int]):
        from apache_beam.io.filesystems import FileSystems

        self._compression, self._root = config.output.compression, staging
        # Keyed by the dataset's name, as the Beam pipeline's write-time shuffle.
        self._key = config.name.encode("utf-8")[:64]
        self._paths: list[tuple[str, str]] = []
        self._temps: dict[str, list] = {}
        self._files: dict[str, list] = {}
        self._pending: dict[str, list[list]] = {}
        self._pending_bytes: dict[str, list[int]] = {}
        names = config.split_names()
        total = sum(num_shards[split] for split in names)
        self._flush_bytes = max(_MIN_FLUSH_BYTES, min(_FLUSH_BYTES, _BUFFERS_BYTES // total))
        try:
            for split in names:
                n = num_shards[split]
                paths = [fs.join(staging, *shard_file(split, config.name, i, n, self._compression).split("/"))
                         for i in range(n)]
                self._temps[split], self._files[split] = [], []
                for p in paths:  # every shard exists, even one that gets no record (as Beam's)
                    temp = f"{p}.unsorted"
                    self._files[split].append(FileSystems.create(temp))
                    self._temps[split].append(temp)
                    self._paths.append((split, p))
                self._pending[split] = [[] for _ in paths]
                self._pending_bytes[split] = [0] * n
        except OSError as e:
            self._close_files()
            raise OSError(f"{staging}: cannot open {len(self._paths) + 1} shard files at once ({e}); lower "
                          f"output.num_shards (or raise output.target_shard_mb), or raise the open-file limit "
                          f"(ulimit -n)") from e

    def write_encoded(self, split: str, buffer: np.ndarray, offsets: np.ndarray) -> None:
        """Add a batch of records (one buffer and ``n + 1`` offsets, as
        `encode_examples_buffer` gives them) to a split's shards."""
        if len(offsets) < 2:
            return
        progress.advance(rows_written(split), len(offsets) - 1)
        pending, sizes = self._pending[split], self._pending_bytes[split]
        hashes = record_hashes(buffer, offsets, self._key)
        shard_of = (hashes % np.uint64(len(pending))).astype(np.int64)
        order = np.argsort(shard_of, kind="stable")
        data, bounds = take_records(buffer, offsets, order)
        ends = np.cumsum(np.bincount(shard_of, minlength=len(pending))).tolist()
        first = 0
        for i, last in enumerate(ends):
            if last > first:
                part = data[bounds[first]:bounds[last]]
                pending[i].append((hashes[order[first:last]], np.diff(bounds[first:last + 1]), part))
                sizes[i] += part.nbytes + 16 * (last - first)
                if sizes[i] >= self._flush_bytes:
                    self._flush(split, i)
            first = last

    def _flush(self, split: str, i: int) -> None:
        """Append a shard's buffered records to its temporary file, as one block."""
        parts = self._pending[split][i]
        if not parts:
            return
        hashes = np.concatenate([h for h, _, _ in parts]).astype("<u8")
        lengths = np.concatenate([n for _, n, _ in parts]).astype("<u8")
        f = self._files[split][i]
        f.write(np.array([hashes.size], dtype="<u8").tobytes())
        f.write(hashes.tobytes())
        f.write(lengths.tobytes())
        for _, _, part in parts:
            f.write(part.tobytes())
        parts.clear()
        self._pending_bytes[split][i] = 0

    def _close_files(self) -> None:
        for files in self._files.values():
            for f in files:
                f.close()
        self._files = {}

    def close(self, *, sort: bool = True) -> list[tuple[str, dict[str, Any]]]:
        """Write out the buffers, then (``sort``) write every shard; returns ``(split,
        shard description)`` per shard."""
        from apache_beam.io.filesystems import FileSystems

        if sort:
            for split, pending in self._pending.items():
                for i in range(len(pending)):
                    self._flush(split, i)
        self._close_files()
        temps = [t for split in self._temps for t in self._temps[split]]
        try:
            if not sort:
                return []
            # Two shards at a time: sorting, gathering, CRCs, hashing and writing are
            # NumPy, hashlib and file calls that release the GIL.
            with ThreadPoolExecutor(2, thread_name_prefix="tfstream-shards") as pool:
                described = list(pool.map(self._write_shard, [p for _, p in self._paths], temps))
            return [(split, d) for (split, _), d in zip(self._paths, described)]
        finally:
            existing = [t for t in temps if FileSystems.exists(t)]
            if existing:
                FileSystems.delete(existing)

    def _write_shard(self, path: str, temp: str) -> dict[str, Any]:
        """Sort one shard's records, and write and describe the shard file."""
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(temp, compression_type="uncompressed") as f:
            raw = np.frombuffer(f.read(), dtype=np.uint8)
        hashes, lengths, starts, at = [], [], [], 0
        while at < raw.size:  # the blocks: count, hashes, lengths, records
            count = int(raw[at:at + 8].view("<u8")[0])
            h = raw[at + 8:at + 8 + 8 * count].view("<u8")
            n = raw[at + 8 + 8 * count:at + 8 + 16 * count].view("<u8").astype(np.int64)
            at += 8 + 16 * count
            hashes.append(h), lengths.append(n), starts.append(at + np.cumsum(n) - n)
            at += int(n.sum())
        hashes = np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)
        lengths = np.concatenate(lengths) if lengths else np.empty(0, dtype=np.int64)
        starts = np.concatenate(starts) if starts else np.empty(0, dtype=np.int64)
        order = _sort_order(hashes, raw, starts, lengths)
        if lengths.size and (lengths == lengths[0]).all():  # rows of a sliding view: no index per byte
            parts = (order[i:i + FRAME_RECORDS] for i in range(0, order.size, FRAME_RECORDS))
        else:
            parts = (order[part] for part in byte_batches(lengths[order]))
        batches = (gather_records(raw, starts[rows], lengths[rows]) for rows in parts)
        return write_shard(path, batches, self._compression, root=self._root)


def _sort_order(hashes: np.ndarray, data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The order of records sorted by ``(hash, record bytes)``: by hash, and the rare
    records that share one by their bytes (record ``r`` is ``data[starts[r]:][:lengths[r]]``)."""
    order = np.argsort(hashes, kind="stable")
    ranked = hashes[order]
    tied = np.flatnonzero(ranked[1:] == ranked[:-1])
    if tied.size:
        firsts = tied[np.r_[True, tied[1:] != tied[:-1] + 1]]
        for first in firsts.tolist():
            last = first + 1
            while last + 1 < ranked.size and ranked[last + 1] == ranked[first]:
                last += 1
            group = order[first:last + 1].tolist()
            group.sort(key=lambda r: data[starts[r]:starts[r] + lengths[r]].tobytes())
            order[first:last + 1] = group
    return order
