"""Writing NumPy arrays to a tfstream dataset in one process, streaming, chunk by chunk.

For a user who holds NumPy arrays, maybe larger than memory (``np.load(path,
mmap_mode="r")``): `write_arrays` writes the same dataset as `preprocess` (sharded
TFRecords, the manifest with full-pass statistics and vocabularies, the quarantine,
imputation, the bad-row budget and the drift check, the TFDS metadata), without
holding the arrays, or the records, in memory. Beam's DirectRunner cannot do that: its
reshuffle and the write-time shuffle's group-by-key keep every record in memory.

How, and what it shares with the Beam pipeline (`beam_pipeline`): everything but the
Beam graph.

* The arrays are read ``chunk_rows`` rows at a time (`sources.array_chunks`, as the npz
  source reads them): slicing a memory-mapped array reads only that slice's pages, and
  those pages are released from the process after each chunk.
* Each row is validated and routed to its split or to the quarantine by
  `rows.route_chunk`, the function the Beam pipeline maps over its chunks.
  The split key is the ``split.key`` columns, else ``("arrays", row number)``.
* Statistics are `DatasetStats` accumulators, one per split; vocabularies are token
  counts of the training split ranked by `transforms.vocabulary.top_tokens`. When a feature
  imputes, a first pass computes them (the imputed value is the training mean), and a
  second pass writes; arrays are cheap to read again.
* A record goes to one of its split's ``num_shards`` files, chosen by a keyed hash of
  the record (`sharding.record_hash`): every shard is a random sample of the
  whole source, even when the arrays are sorted. Once written, each shard is sorted by
  that hash, one shard at a time, as the Beam writer orders it: the two writers give
  byte-identical shards, and the reader's block shuffle can rely on a random order.
* Records are framed by `shards.write_record` (pure Python, no TensorFlow) and written
  through Beam's `FileSystems` (local paths, ``gs://``...), gzip included, into the
  layout Beam writes (`shards.shard_file`), and sorted by `sharding.write_shard`. The
  manifest comes from `manifest_builder.manifest_json`; the run is checked and
  published (or refused) by `run.finish_run`.

Memory: one chunk (its Python values), a buffer per shard (1 MiB; less with more than 64
shards), the statistics accumulators (bounded), the vocabulary counts (one entry per
distinct token of the training split, as in Beam's keyed count), and, at the end, one
shard's records while it is sorted (keep shards to a few hundred MB: output.num_shards).
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import logging
import mmap
import os
import time
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import Manifest, write_manifest
from tfstream.pipelines.shards import read_records, shard_file, write_record
from tfstream.pipelines.write import sources
from tfstream.pipelines.write.manifest_builder import manifest_json, manifest_settings
from tfstream.pipelines.write.publish import QUARANTINE_DIR, QUARANTINE_FILE
from tfstream.pipelines.write.rows import QUARANTINED, first_example, quarantine_key, route_chunk, rows_in_chunk
from tfstream.pipelines.write.run import PreprocessError, finish_run, resolve_dataset_dir, writing
from tfstream.pipelines.write.sharding import describe_shard, num_shards_of, record_hash, write_shard
from tfstream.transforms.analyzers import DatasetStats
from tfstream.transforms.example_encoder import encode_examples, rows_to_columns
from tfstream.transforms.split import Splitter
from tfstream.transforms.validation import ImputationError, impute_row, imputation_values
from tfstream.transforms.vocabulary import top_tokens

_log = logging.getLogger(__name__)

# The "file" of every row: quarantine records and messages say "arrays: row 7: ...",
# and without split key columns a row's split is the hash of ("arrays", row number).
SOURCE_NAME = "arrays"

# A shard's buffer is written out when it holds this much: few, large writes (and few
# calls into zlib for gzip shards), and a small buffer per shard; with many shards, less
# each, so that all buffers together stay near _BUFFERS_BYTES.
_FLUSH_BYTES = 1 << 20
_MIN_FLUSH_BYTES = 64 << 10
_BUFFERS_BYTES = 64 << 20

# How often a long run logs how far it is.
_PROGRESS_SECONDS = 30.0

# The quarantine file, named as the Beam pipeline's WriteToText names it.


def write_arrays(
    config: JobConfig,
    arrays: Mapping[str, np.ndarray],
    output_dir: Optional[str] = None,
    *,
    chunk_rows: int = 65536,
    previous: Optional[str] = None,
    wait: bool = False,
    force: bool = False,
) -> Manifest:
    """Write NumPy arrays to a tfstream dataset, streaming, and return its manifest.

    The arrays take the place of an npz source: ``arrays`` maps the source column names
    that the config's features, label and ``split.key`` name to arrays whose first axis
    is rows (extra arrays are ignored), in the npz layouts:

    * without ``source.lengths_key``: one entry per row in every array; 1-D arrays are
      scalars, 2-D arrays fixed vectors, and a sequence feature's array is
      ``(rows, steps, dim)``;
    * with ``source.lengths_key``: ``arrays[lengths_key]`` holds the sequence lengths,
      sequence arrays hold all sequences concatenated along axis 0 (``sum(lengths)``
      rows), and the other arrays one entry per sequence.

    From the config's ``source`` section, `write_arrays` uses ``lengths_key`` and
    ``na_values`` (for string arrays); ``format`` and ``path`` are not read (the
    section is required by `JobConfig`): write ``source: {format: npz, path: <arrays>}``,
    which also allows sequence features and ``lengths_key``. A config of another source
    format works too, with a warning that its files are not read.

    Arrays may be ``np.memmap`` (``np.load(path, mmap_mode="r")``) or any array: only
    ``chunk_rows`` rows are read at a time, and the pages of a memory-mapped array are
    released after each chunk, so the process holds about one chunk whatever the size of
    the arrays. Object arrays (strings from pandas) are accepted. See the module doc for
    how the records are shuffled into shards.

    The run is published, checked and refused exactly like `preprocess`'s: more than
    ``validation.max_bad_fraction`` rejected rows, or drift with ``on_drift: error``,
    refuse it, and the previous dataset stays in place.

    Args:
        config: the job config.
        arrays: source column name → array (rows first).
        output_dir: the dataset directory; defaults to ``output.dir`` of the config,
            then ``runs/<name>/dataset``.
        chunk_rows: rows read, validated and encoded at a time.
        previous: the manifest (file, or dataset directory) to compare the new
            statistics with; defaults to the dataset directory's current manifest.
        wait, force: as for `preprocess`.

    Returns:
        The published dataset's manifest.

    Raises:
        sources.SourceError: a missing array, or arrays whose row counts or shapes do
            not fit the layout.
        run.PreprocessError: the run was refused; the message says which rows or
            features, and what to change.

    Example:
        The seed article's arrays, memory-mapped (``configs/seed_dense.yaml`` reads ``X``
        and ``y``):

        >>> X = np.lib.format.open_memmap(str(tmp_path / "X.npy"), mode="w+", dtype="float32", shape=(1000, 10))
        >>> X[:] = np.random.default_rng(0).random((1000, 10)); X.flush()
        >>> np.save(tmp_path / "y.npy", np.random.default_rng(1).integers(0, 2, 1000))
        >>> arrays = {"X": np.load(tmp_path / "X.npy", mmap_mode="r"), "y": np.load(tmp_path / "y.npy", mmap_mode="r")}
        >>> m = write_arrays(load_config("configs/seed_dense.yaml"), arrays, str(tmp_path / "dataset"))
        >>> m.num_examples("train") + m.num_examples("eval")
        1000

        A directory of ``<column>.npy`` files::

            arrays = {p.stem: np.load(p, mmap_mode="r") for p in pathlib.Path("data").glob("*.npy")}
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows: expected >= 1, got {chunk_rows}")
    _warn_about_source(config)
    columns, lengths = _select(config, arrays)
    sequence_columns = config.sequence_columns()
    sources.check_array_layout(SOURCE_NAME, columns, sequence_columns, config.source.lengths_key, lengths,
                               shapes=sources.declared_shapes(config.row_rules()))
    dataset_dir = resolve_dataset_dir(config, output_dir)
    n = lengths.shape[0] if lengths is not None else next(iter(columns.values())).shape[0]
    with writing(config, dataset_dir, previous=previous, wait=wait, force=force) as staging:
        _log.info("write_arrays %r: %d rows, %d at a time -> %s", config.name, n, chunk_rows, dataset_dir)
        run = _Run(config, columns, lengths, staging, chunk_rows)
        write_manifest(staging, run.write())
        return finish_run(config, staging, dataset_dir, previous)


def _warn_about_source(config: JobConfig) -> None:
    source = config.source
    if source.tfds is not None or source.format != "npz":
        what = f"tfds {source.tfds!r}" if source.tfds is not None else f"{source.format} {source.path!r}"
        _log.warning("write_arrays: the config's source (%s) is not read: the rows come from the arrays given, in "
                     "the npz layout; write `source: {format: npz, path: <arrays>}` to say so", what)


def _select(config: JobConfig, arrays: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], Optional[np.ndarray]]:
    """The arrays the job reads, in column order, and the lengths array (or None)."""
    lengths_key = config.source.lengths_key
    wanted = config.source_columns()
    missing = [c for c in [*([lengths_key] if lengths_key else []), *wanted] if c not in arrays]
    if missing:
        raise sources.SourceError(
            f"{SOURCE_NAME}: missing required array(s) {sorted(missing)}; the arrays given are {sorted(arrays)}. "
            f"Fix the column names in the config (features[].column, label.column, split.key, "
            f"source.lengths_key) or the keys of `arrays`"
        )

    def as_array(value):  # a memmap stays one: np.asarray would not copy it, but drops the type
        return value if isinstance(value, np.ndarray) else np.asarray(value)

    lengths = as_array(arrays[lengths_key]) if lengths_key else None
    return {c: as_array(arrays[c]) for c in wanted}, lengths


class _Run:
    """One `write_arrays` run: the passes over the arrays, and what they accumulate."""

    def __init__(self, config: JobConfig, columns: dict[str, np.ndarray], lengths: Optional[np.ndarray],
                 staging: str, chunk_rows: int):
        self.config = config
        self.columns, self.lengths = columns, lengths
        self.staging, self.chunk_rows = staging, chunk_rows
        self.schema = config.schema()
        self.rules = config.row_rules()
        self.splitter = Splitter(dict(config.split.fractions), config.split.salt)
        self.split_key = tuple(config.split.key)
        self.train_split = config.train.train_split
        self.stats = DatasetStats(self.schema)
        self.accumulators = {split: self.stats.create_accumulator() for split in config.split.fractions}
        self.vocabulary_sizes = config.vocabulary_sizes()
        self.token_counts: dict[str, collections.Counter] = {n: collections.Counter() for n in self.vocabulary_sizes}
        self.quarantined: collections.Counter = collections.Counter()
        self.examples: dict[str, tuple[str, int, str]] = {}
        self.rows_read = 0
        self.fingerprint = _Fingerprint(columns, lengths, config.source.lengths_key)
        self.mappings = _mappings([*columns.values(), *([lengths] if lengths is not None else [])])
        self._fast = _FastRoute(self.rules, self.splitter, self.split_key, columns, lengths)

    def _chunks(self, what: str) -> Iterator[tuple[tuple[str, int, dict[str, Any]], dict[str, Any]]]:
        total = self.lengths.shape[0] if self.lengths is not None else next(iter(self.columns.values())).shape[0]
        last = time.monotonic()
        for name, first_row, columns, slices in sources.array_chunks(
                SOURCE_NAME, self.columns, self.config.sequence_columns(), self.lengths, self.chunk_rows):
            chunk = (name, first_row, columns)
            yield chunk, slices
            # The chunk is done: give its pages of memory-mapped arrays back (they stay in
            # the page cache), or the process's resident memory would grow to the arrays' size.
            for m in self.mappings:
                m.madvise(mmap.MADV_DONTNEED)
            if time.monotonic() - last > _PROGRESS_SECONDS:
                last = time.monotonic()
                _log.info("write_arrays %s: %d of %d rows", what, first_row - 1 + rows_in_chunk(chunk), total)

    def write(self) -> dict[str, Any]:
        """Run the passes; return the manifest."""
        from apache_beam.io.filesystems import FileSystems

        imputed = self.config.imputed_features()
        quarantine_file = fs.join(self.staging, QUARANTINE_DIR, QUARANTINE_FILE)
        quarantine = FileSystems.create(quarantine_file)
        shards = None
        try:
            shards = _ShardWriters(self.config, self.staging)
            if imputed:  # the training means first, then the records
                self._collect(quarantine, None)
                try:
                    values = imputation_values(self.stats.extract_output(self.accumulators[self.train_split]),
                                               imputed)
                except ImputationError as e:
                    raise PreprocessError(str(e)) from None
                for chunk, slices in self._chunks("pass 2 of 2 (write)"):
                    fast, rest = self._fast.route(chunk, slices)
                    for split, columns, n in fast:
                        shards.write_many(split, encode_examples(columns, self.schema, n))
                    good: dict[str, list] = collections.defaultdict(list)
                    for tag, row in rest:
                        if tag != QUARANTINED:
                            good[tag].append(impute_row(row, values, self.schema))
                    self._write_rows(shards, good)
            else:
                self._collect(quarantine, shards)
        finally:
            quarantine.close()
            paths = shards.close() if shards is not None else []
        descriptions = [(split, describe_shard(p, self.config.output.compression, root=self.staging))
                        for split, p in paths]
        return manifest_json(
            **manifest_settings(self.config, self.fingerprint.result(),
                                {"arrays": {"chunk_rows": self.chunk_rows}}),
            shards=descriptions,
            stats=[(split, self.stats.extract_output(acc)) for split, acc in self.accumulators.items()],
            vocabularies=top_tokens(self.token_counts, self.vocabulary_sizes) if self.vocabulary_sizes else [],
            quarantined=list(self.quarantined.items()),
            examples=list(self.examples.items()),
            quarantine_files=[quarantine_file],
            dataset_dir=self.staging,
            rows_read=self.rows_read,
        )

    def _collect(self, quarantine, shards: Optional["_ShardWriters"]) -> None:
        """The pass that counts: rows read, quarantine, statistics, vocabularies, the
        fingerprint; with ``shards``, it also writes the records."""
        stats, accumulators = self.stats, self.accumulators
        vocabulary = [(name, self.token_counts[name]) for name in self.vocabulary_sizes]
        for chunk, slices in self._chunks("pass 1 of 2 (statistics)" if shards is None else "write"):
            self.rows_read += rows_in_chunk(chunk)
            self.fingerprint.add(slices, chunk[1] - 1, self.chunk_rows)
            fast, rest = self._fast.route(chunk, slices)
            for split, columns, n in fast:
                self._fast.add_stats(stats, accumulators[split], columns, n)
                if shards is not None:
                    shards.write_many(split, encode_examples(columns, self.schema, n))
            good: dict[str, list] = collections.defaultdict(list)
            for tag, row in rest:
                if tag == QUARANTINED:
                    quarantine.write(json.dumps(row, sort_keys=True).encode("utf-8") + b"\n")
                    self.quarantined[quarantine_key(row)] += 1
                    if row["action"] == "rejected":
                        key, example = first_example(row)
                        if key not in self.examples or example < self.examples[key]:
                            self.examples[key] = example
                    continue
                stats.add_input(accumulators[tag], row)
                if tag == self.train_split:
                    for name, counts in vocabulary:
                        counts[row[name]] += 1
                if shards is not None:
                    good[tag].append(row)
            if shards is not None:
                self._write_rows(shards, good)

    def _write_rows(self, shards: "_ShardWriters", good: Mapping[str, list]) -> None:
        """Encode a chunk's rows (dicts) of each split in one batch, and write them."""
        for split, rows in good.items():
            shards.write_many(split, encode_examples(rows_to_columns(rows, self.schema), self.schema, len(rows)))



_FLOAT32_MAX = float(np.finfo(np.float32).max)


class _FastRoute:
    """`rows.route_chunk`, vectorized over a chunk, for the rows it can vouch for.

    It applies where every feature is a numeric scalar or fixed vector read from one
    float (float32 features) or signed/small unsigned integer (int64 features) array, and
    the label is a class index from an integer array, or a number (regression, or a
    threshold) from a float or integer array. A row is taken when each of its values is
    one `validation.convert_row` accepts unchanged: floats finite and within float32's
    range, class indices among the declared classes. Every other row (NaN, inf, out of
    range: rows that `convert_row` rejects, drops, or notes for imputation) goes through
    `route_chunk` as before, so the quarantine, its order and its messages are unchanged.
    The split is `Splitter.assign` of the same key, row by row. A taken row's record is
    `encode_examples` of the same values, so the shards are byte-identical.
    """

    def __init__(self, rules, splitter: Splitter, split_key, columns: Mapping[str, np.ndarray], lengths):
        self.rules, self.splitter, self.split_key = rules, splitter, tuple(split_key)
        self.enabled = lengths is None and self._applies(columns)

    def _applies(self, columns) -> bool:
        for rule in self.rules.features:
            f = rule.feature
            if f.kind != "numeric" or len(rule.columns) != 1:
                return False
            arr = columns[rule.columns[0]]
            if arr.ndim != (2 if f.shape else 1) or (f.shape and arr.shape[1] != f.size):
                return False
            if not (arr.dtype.kind == "f" if f.dtype == "float32" else _int_kind(arr.dtype)):
                return False
        label, arr = self.rules.label, columns[self.rules.label.column]
        if label.raw_classes or arr.ndim != 1:
            return False
        if label.label.task == "regression" or label.threshold is not None:
            return arr.dtype.kind == "f" or _int_kind(arr.dtype)
        return _int_kind(arr.dtype)

    def route(self, chunk, slices) -> tuple[list, Iterator]:
        """``([(split, columns for encode_examples, n), ...], route_chunk of the other rows)``."""
        if not self.enabled:
            return [], route_chunk(chunk, self.rules, self.splitter, self.split_key)
        name, first_row, columns = chunk
        n = rows_in_chunk(chunk)
        ok = np.ones(n, dtype=bool)
        values = {}
        for rule in self.rules.features:
            arr = np.asarray(slices[rule.columns[0]])
            if rule.feature.dtype == "float32":
                with np.errstate(invalid="ignore"):
                    fine = np.abs(arr.astype(np.float64, copy=False)) <= _FLOAT32_MAX  # False for NaN, inf
                ok &= fine.all(axis=1) if fine.ndim == 2 else fine
            values[rule.feature.name] = arr
        label = self.rules.label
        arr = np.asarray(slices[label.column])
        if label.label.task == "regression" or label.threshold is not None:
            x = arr.astype(np.float64)
            with np.errstate(invalid="ignore"):
                ok &= np.abs(x) <= _FLOAT32_MAX
            y = x if label.threshold is None else (x > label.threshold).astype(np.int64)
        else:
            ok &= (arr >= 0) & (arr < label.label.num_classes)
            y = arr
        values[label.label.name] = y
        taken = np.flatnonzero(ok)
        base = os.path.basename(name)
        keys = [columns[c] for c in self.split_key]
        names = self.splitter.names
        index = {s: i for i, s in enumerate(names)}
        assign = self.splitter.assign
        split_of = np.fromiter(
            (index[assign([k[i] for k in keys] if keys else [base, first_row + i])] for i in taken.tolist()),
            dtype=np.int64, count=taken.size)
        fast = []
        for i, split in enumerate(names):
            rows = taken[split_of == i]
            if rows.size:
                fast.append((split, {k: v[rows] for k, v in values.items()}, int(rows.size)))
        rest = np.flatnonzero(~ok).tolist()

        def others():
            for i in rest:
                yield from route_chunk((name, first_row + i, {c: [v[i]] for c, v in columns.items()}),
                                       self.rules, self.splitter, self.split_key)

        return fast, others()

    def add_stats(self, stats: DatasetStats, acc, columns: Mapping[str, np.ndarray], n: int) -> None:
        """`DatasetStats.add_input` of each taken row, in one go (numeric features only)."""
        acc.num_examples += n
        for f in stats.schema.features:
            acc.counts[f.name]["count"] += n
            acc.extend(f.name, columns[f.name].astype(np.float64).tolist())
        label = stats.schema.label.name
        if acc.classes is not None:
            counts = np.bincount(np.asarray(columns[label], dtype=np.int64), minlength=len(acc.classes))
            for c, k in enumerate(counts.tolist()):
                acc.classes[c] += k
        else:
            acc.extend(label, np.asarray(columns[label], dtype=np.float64).tolist())


def _int_kind(dtype: np.dtype) -> bool:
    """Integers that `validation` takes as they are: signed, or unsigned below 2**63."""
    return dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8)


class _ShardWriters:
    """The shard files of every split, open for writing, each with a buffer."""

    def __init__(self, config: JobConfig, staging: str):
        from apache_beam.io.filesystem import CompressionTypes
        from apache_beam.io.filesystems import FileSystems

        compression = self._compression = config.output.compression
        kind = CompressionTypes.GZIP if compression == "gzip" else CompressionTypes.UNCOMPRESSED
        self._kind = kind
        # Keyed by the dataset's name, as the Beam pipeline's write-time shuffle.
        self._key = config.name.encode("utf-8")[:64]
        self._paths: list[tuple[str, str]] = []
        self._files: dict[str, list] = {}
        self._buffers: dict[str, list[io.BytesIO]] = {}
        total = sum(num_shards_of(config, split) for split in config.split.fractions)
        self._flush_bytes = max(_MIN_FLUSH_BYTES, min(_FLUSH_BYTES, _BUFFERS_BYTES // total))
        try:
            for split in config.split.fractions:
                n = num_shards_of(config, split)
                paths = [fs.join(staging, *shard_file(split, config.name, i, n, compression).split("/"))
                         for i in range(n)]
                self._files[split] = []
                for p in paths:  # every shard exists, even one that gets no record (as Beam's)
                    self._files[split].append(FileSystems.create(p, compression_type=kind))
                    self._paths.append((split, p))
                self._buffers[split] = [io.BytesIO() for _ in paths]
        except OSError as e:
            self.close(sort=False)
            raise OSError(f"{staging}: cannot open {len(self._paths) + 1} shard files at once ({e}); lower "
                          f"output.num_shards, or raise the open-file limit (ulimit -n)") from e

    def write(self, split: str, record: bytes) -> None:
        buffers = self._buffers[split]
        i = record_hash(record, self._key) % len(buffers)
        buf = buffers[i]
        write_record(buf, record)
        if buf.tell() >= self._flush_bytes:
            self._flush(split, i)

    def write_many(self, split: str, records: list[bytes]) -> None:
        buffers, key, flush_bytes = self._buffers[split], self._key, self._flush_bytes
        n = len(buffers)
        for record in records:
            i = record_hash(record, key) % n
            buf = buffers[i]
            write_record(buf, record)
            if buf.tell() >= flush_bytes:
                self._flush(split, i)

    def _flush(self, split: str, i: int) -> None:
        buf = self._buffers[split][i]
        self._files[split][i].write(buf.getbuffer())
        buf.seek(0)
        buf.truncate()

    def close(self, *, sort: bool = True) -> list[tuple[str, str]]:
        """Write out the buffers, close every file, then (``sort``) put each shard in the
        Beam writer's order; returns ``(split, path)`` per shard."""
        for split, files in self._files.items():
            for i, f in enumerate(files):
                if split in self._buffers:
                    self._flush(split, i)
                f.close()
        opened, self._files = bool(self._files), {}
        if sort and opened:
            for _, path in self._paths:
                self._sort(path)
        return self._paths

    def _sort(self, path: str) -> None:
        """Rewrite one shard sorted by ``(record hash, record)``, as the Beam writer
        orders a shard: the reader's block shuffle relies on every shard being stored in
        a random order, also when the arrays are sorted (by class, by date). Memory: one
        shard's records, like Beam's writer."""
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(path, compression_type=self._kind) as f:
            records = sorted((record_hash(r, self._key), r) for r in read_records(f, path))
        write_shard(path, (record for _, record in records), self._compression, buffer_bytes=self._flush_bytes)


class _Fingerprint:
    """The source fingerprint of the manifest, for arrays: per array its shape, dtype
    and SHA-256 of its bytes, hashed chunk by chunk as the first pass reads it."""

    def __init__(self, columns: dict[str, np.ndarray], lengths: Optional[np.ndarray], lengths_key: Optional[str]):
        self._arrays = dict(columns)
        self._hashes = {c: hashlib.sha256() for c in columns}
        self._lengths, self._lengths_key = lengths, lengths_key
        if lengths_key is not None:
            self._arrays[lengths_key] = lengths
            self._hashes.setdefault(lengths_key, hashlib.sha256())

    def add(self, slices: Mapping[str, Any], start: int, chunk_rows: int) -> None:
        for c, part in slices.items():
            _hash_into(self._hashes[c], part)
        if self._lengths is not None and self._lengths_key not in slices:
            _hash_into(self._hashes[self._lengths_key], self._lengths[start:start + chunk_rows])

    def result(self) -> dict[str, Any]:
        whole = hashlib.sha256()
        files = []
        for c, arr in self._arrays.items():
            digest = self._hashes[c].hexdigest()
            filename = getattr(arr, "filename", None)  # a memmap's file
            files.append({"path": os.fspath(filename) if filename else f"<{SOURCE_NAME}>", "name": c,
                          "bytes": int(arr.nbytes), "sha256": digest, "shape": list(arr.shape),
                          "dtype": str(arr.dtype)})
            whole.update(f"{c}:{arr.nbytes}:{digest};".encode())
        return {"sha256": whole.hexdigest(), "files": files}


def _hash_into(h, part) -> None:
    arr = np.asarray(part)
    if arr.dtype.hasobject:  # Python objects have no stable bytes: hash their text
        h.update(repr(arr.tolist()).encode("utf-8"))
    else:
        h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _mappings(arrays) -> list[mmap.mmap]:
    """The memory maps behind ``np.memmap`` arrays whose pages can be dropped safely:
    shared mappings (modes ``r``, ``r+``, ``w+``), which the kernel reads back from the
    file. A copy-on-write (``c``) map may hold changes that exist nowhere else."""
    if not hasattr(mmap, "MADV_DONTNEED"):  # not every platform has it
        return []
    found: dict[int, mmap.mmap] = {}
    for arr in arrays:
        obj, mode = arr, None
        while obj is not None and not isinstance(obj, mmap.mmap):
            if isinstance(obj, np.memmap) and mode is None:
                mode = obj.mode
            obj = getattr(obj, "base", None)
        if isinstance(obj, mmap.mmap) and mode in ("r", "r+", "w+"):
            found[id(obj)] = obj
    return list(found.values())


__all__ = ["write_arrays", "SOURCE_NAME"]
