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
  The split key is the ``split.key`` columns, else the row number alone, as for an
  .npz through the Beam pipeline: the same arrays land in the same splits either way;
  ``split.column`` gives each row's split, as it does there. With a hash split, rows
  whose values need no conversion are validated, split (`Splitter.assign_numbers`) and
  counted a chunk at a time with NumPy (`_FastRoute`).
* Statistics are `DatasetStats` accumulators, one per split; vocabularies are token
  counts of the training split ranked by `transforms.vocabulary.top_tokens`. When a feature
  imputes, a first pass computes them (the imputed value is the training mean), and a
  second pass writes; arrays are cheap to read again.
* A chunk's records are encoded at once (`example_encoder.encode_examples_buffer`) and
  hashed at once (`sharding.record_hashes`, the Beam writer's keyed hash): the hash picks
  each record's shard, so every shard is a random sample of the whole source, even when
  the arrays are sorted. Each shard's records are appended, unsorted, to a temporary
  file; at the end each shard in turn is sorted by ``(hash, record)``, as the Beam writer
  orders it, framed (`shards.frame_records`, NumPy) and written through Beam's
  `FileSystems` (local paths, ``gs://``..., gzip included) into the layout Beam writes
  (`shards.shard_file`): the two writers give byte-identical shards, and the reader's
  block shuffle can rely on a random order. The manifest comes from
  `manifest_builder.manifest_json`; the run is checked and published (or refused) by
  `run.finish_run`.

Memory: two chunks (one whose statistics a worker thread adds while the next is
written), a buffer per shard (1 MiB; less with more than 64 shards), the statistics
accumulators (bounded), the vocabulary counts (one entry per distinct token of the
training split, as in Beam's keyed count), and, at the end, two shards' records while
they are sorted and written (two threads): ``output.target_shard_mb`` keeps shards near
128 MiB (the shard counts are planned as `preprocess` plans them for an .npz of the
arrays: `shard_plan`, `source_size.measure_arrays`).
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import mmap
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator, Mapping, Optional

import numpy as np

from tfstream.pipelines import fs, progress
from tfstream.pipelines.config import ConfigError, JobConfig
from tfstream.pipelines.manifest import Manifest, write_manifest
from tfstream.pipelines.write import sources
from tfstream.pipelines.write.array_shards import ShardWriters
from tfstream.pipelines.write.manifest_builder import manifest_json, manifest_settings
from tfstream.pipelines.write.publish import QUARANTINE_DIR, QUARANTINE_FILE
from tfstream.pipelines.write.rows import QUARANTINED, first_example, quarantine_key, route_chunk, rows_in_chunk
from tfstream.pipelines.write.run import PreprocessError, finish_run, progress_tasks, resolve_dataset_dir, writing
from tfstream.pipelines.write.shard_plan import plan_shards, shard_sizing
from tfstream.pipelines.write.sharding import ROWS_READ
from tfstream.pipelines.write.source_size import measure_arrays
from tfstream.transforms.analyzers import DatasetStats
from tfstream.transforms.example_encoder import encode_examples_buffer, rows_to_columns
from tfstream.transforms.split import SplitRouter
from tfstream.transforms.validation import ImputationError, impute_row, imputation_values
from tfstream.transforms.vocabulary import top_tokens

_log = logging.getLogger(__name__)

# The "file" of every row: quarantine records and messages say "arrays: row 7: ...".
SOURCE_NAME = "arrays"

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
    format works too, with a warning that its files are not read; ``source.splits``
    (splits given per file) is refused: give the splits in an array named by
    ``split.column``.

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
    if config.source.splits is not None:
        raise ConfigError("source.splits: write_arrays takes its rows from the arrays given, not from files, so no "
                          "file can give a split; give each row's split in an array (split.column, with "
                          "split.values), or write the files with preprocess")
    if config.source.sequence is not None:
        raise ConfigError("source.sequence: write_arrays takes arrays in the npz layouts, not a long-format table; "
                          "concatenate the sequences in one array per feature and give their lengths "
                          "(source.lengths_key), or write the table's files with preprocess")
    _warn_about_source(config)
    columns, lengths = _select(config, arrays)
    sequence_columns = config.sequence_columns()
    sources.check_array_layout(SOURCE_NAME, columns, sequence_columns, config.source.lengths_key, lengths,
                               shapes=sources.declared_shapes(config.row_rules()))
    dataset_dir = resolve_dataset_dir(config, output_dir)
    n = lengths.shape[0] if lengths is not None else next(iter(columns.values())).shape[0]
    with writing(config, dataset_dir, previous=previous, wait=wait, force=force) as staging:
        _log.info("write_arrays %r: %d rows, %d at a time -> %s", config.name, n, chunk_rows, dataset_dir)
        plan = plan_shards(config, lambda: measure_arrays(config, columns, lengths))
        run = _Run(config, columns, lengths, staging, chunk_rows, plan)
        with progress.Progress("write_arrays") as shown:
            progress_tasks(shown, plan, int(n))
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
                 staging: str, chunk_rows: int, plan: dict[str, dict[str, Any]]):
        self.config, self.plan = config, plan
        self.columns, self.lengths = columns, lengths
        self.staging, self.chunk_rows = staging, chunk_rows
        self.schema = config.schema()
        self.rules = config.row_rules()
        self.router = config.split_plan().router()
        self.split_key = tuple(config.split.key)
        self.train_split = config.train.train_split
        self.stats = DatasetStats(self.schema)
        self.accumulators = {split: self.stats.create_accumulator() for split in self.router.names}
        self.vocabulary_sizes = config.vocabulary_sizes()
        self.token_counts: dict[str, collections.Counter] = {n: collections.Counter() for n in self.vocabulary_sizes}
        self.quarantined: collections.Counter = collections.Counter()
        self.examples: dict[str, tuple[str, int, str]] = {}
        self.rows_read = 0
        self.fingerprint = _Fingerprint(columns, lengths, config.source.lengths_key)
        self.mappings = _mappings([*columns.values(), *([lengths] if lengths is not None else [])])
        self._fast = _FastRoute(self.rules, self.router, self.split_key, columns, lengths)

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
            if time.monotonic() - last > _PROGRESS_SECONDS and not progress.shown():  # else drawn
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
            shards = ShardWriters(self.config, self.staging, {s: p["num_shards"] for s, p in self.plan.items()})
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
                        shards.write_encoded(split, *encode_examples_buffer(columns, self.schema, n))
                    good: dict[str, list] = collections.defaultdict(list)
                    for tag, row in rest:
                        if tag != QUARANTINED:
                            good[tag].append(impute_row(row, values, self.schema))
                    self._write_rows(shards, good)
            else:
                self._collect(quarantine, shards)
        except BaseException:
            if shards is not None:
                shards.close(sort=False)
            raise
        finally:
            quarantine.close()
        descriptions = shards.close()
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
            shard_sizing=shard_sizing(self.plan),
        )

    def _collect(self, quarantine, shards: Optional["ShardWriters"]) -> None:
        """The pass that counts: rows read, quarantine, statistics, vocabularies, the
        fingerprint; with ``shards``, it also writes the records.

        A chunk's statistics are added by one worker thread while the next chunk is
        routed, encoded and written (NumPy's sorts and arithmetic release the GIL): in
        chunk order, one chunk in flight, so the statistics are those of one thread."""
        vocabulary = [(name, self.token_counts[name]) for name in self.vocabulary_sizes]
        with ThreadPoolExecutor(1, thread_name_prefix="tfstream-statistics") as statistics:
            in_flight = None
            for chunk, slices in self._chunks("pass 1 of 2 (statistics)" if shards is None else "write"):
                self.rows_read += rows_in_chunk(chunk)
                progress.advance(ROWS_READ, rows_in_chunk(chunk))
                self.fingerprint.add(slices, chunk[1] - 1, self.chunk_rows)
                fast, rest = self._fast.route(chunk, slices)
                kept: list[tuple[str, dict[str, Any]]] = []
                for tag, row in rest:
                    if tag == QUARANTINED:
                        quarantine.write(json.dumps(row, sort_keys=True).encode("utf-8") + b"\n")
                        self.quarantined[quarantine_key(row)] += 1
                        if row["action"] == "rejected":
                            key, example = first_example(row)
                            if key not in self.examples or example < self.examples[key]:
                                self.examples[key] = example
                        continue
                    kept.append((tag, row))
                    if tag == self.train_split:
                        for name, counts in vocabulary:
                            counts[row[name]] += 1
                if in_flight is not None:
                    in_flight.result()
                in_flight = statistics.submit(self._add_statistics, fast, kept)
                if shards is not None:
                    for split, columns, n in fast:
                        shards.write_encoded(split, *encode_examples_buffer(columns, self.schema, n))
                    good: dict[str, list] = collections.defaultdict(list)
                    for tag, row in kept:
                        good[tag].append(row)
                    self._write_rows(shards, good)
            if in_flight is not None:
                in_flight.result()

    def _add_statistics(self, fast, kept) -> None:
        """A chunk's statistics: its vectorized rows' (`_FastRoute.add_stats`), then the others'."""
        for split, columns, n in fast:
            self._fast.add_stats(self.stats, self.accumulators[split], columns, n)
        for tag, row in kept:
            self.stats.add_input(self.accumulators[tag], row)

    def _write_rows(self, shards: "ShardWriters", good: Mapping[str, list]) -> None:
        """Encode a chunk's rows (dicts) of each split in one batch, and write them."""
        for split, rows in good.items():
            shards.write_encoded(split, *encode_examples_buffer(rows_to_columns(rows, self.schema), self.schema,
                                                                   len(rows)))



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
    `encode_examples` of the same values, so the shards are byte-identical. With splits
    given (``split.column``), every row takes `route_chunk`.
    """

    def __init__(self, rules, router: SplitRouter, split_key, columns: Mapping[str, np.ndarray], lengths):
        self.rules, self.router, self.split_key = rules, router, tuple(split_key)
        self.splitter = router.hashing  # None with given splits
        self.enabled = lengths is None and self.splitter is not None and self._applies(columns)

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
            return [], route_chunk(chunk, self.rules, self.router, self.split_key, arrays=True)
        name, first_row, columns = chunk
        n = rows_in_chunk(chunk)
        ok = np.ones(n, dtype=bool)
        values = {}
        for rule in self.rules.features:
            arr = np.asarray(slices[rule.columns[0]])
            if rule.feature.dtype == "float32":
                if arr.dtype == np.float32:  # within float32's range unless inf: finite is enough
                    fine = np.isfinite(arr)
                else:
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
                if label.label.transform == "log1p":
                    ok &= x > -1  # (others are rejected by `convert_row`: out of the transform's domain)
            y = x if label.threshold is None else (x > label.threshold).astype(np.int64)
        else:
            ok &= (arr >= 0) & (arr < label.label.num_classes)
            y = arr
        values[label.label.name] = y
        taken = np.flatnonzero(ok)
        names = self.splitter.names
        if not self.split_key:  # keyed by the row number (`route_chunk`)
            split_of = self.splitter.assign_numbers(first_row + taken)
        else:
            keys = [columns[c] for c in self.split_key]
            index = {s: i for i, s in enumerate(names)}
            assign = self.splitter.assign
            split_of = np.fromiter((index[assign([k[i] for k in keys])] for i in taken.tolist()),
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
                                       self.rules, self.router, self.split_key, arrays=True)

        return fast, others()

    def add_stats(self, stats: DatasetStats, acc, columns: Mapping[str, np.ndarray], n: int) -> None:
        """`DatasetStats.add_input` of each taken row, in one go (numeric features only)."""
        acc.num_examples += n
        for f in stats.schema.features:
            acc.counts[f.name]["count"] += n
            acc.extend(f.name, columns[f.name].astype(np.float64))
        label = stats.schema.label.name
        if acc.classes is not None:
            counts = np.bincount(np.asarray(columns[label], dtype=np.int64), minlength=len(acc.classes))
            for c, k in enumerate(counts.tolist()):
                acc.classes[c] += k
        else:
            acc.extend(label, np.asarray(columns[label], dtype=np.float64))


def _int_kind(dtype: np.dtype) -> bool:
    """Integers that `validation` takes as they are: signed, or unsigned below 2**63."""
    return dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 8)


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
