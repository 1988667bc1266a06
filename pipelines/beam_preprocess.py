"""The write side: an Apache Beam pipeline from a raw source to a tfstream dataset.

    read (chunks of rows) → reshuffle → validate + split (stable hash), per chunk:
        one element per split and chunk (a list of typed rows), not one per row
        rows that break a rule, and rows a rule drops → quarantine/*.jsonl, counted
        per split: full-pass statistics (a lifted CombineFn over batches of rows)
                   vocabularies of the training split (token counts per batch,
                       summed per token, then the top k per feature)
                   impute (training-split means, a side input) → encode
                   → WriteShards: keyed hash per record → shard; group by shard;
                       sort, write each shard file, describe it
    → manifest.json, from side inputs
    then, on the driver: the bad-row fraction and drift against the previous run are
    checked, and the run is published (or refused, leaving the previous dataset as it was)

Rows travel in batches (a chunk's rows of one split) because Beam's cost per element
dwarfs the work per row; every step after validation handles a list of rows at a time.

The per-row routing (`route_chunk`), the vocabulary ranking (`top_tokens`), the manifest
(`manifest_json`) and the end of a run (`start_run`, `finish_run`) are plain functions:
`pipelines.arrays.write_arrays`, the single-process writer for NumPy arrays larger than
memory, calls the same ones, so both write the same kind of dataset.

The pipeline runs on any Beam runner: the DirectRunner by default, or Dataflow, Flink
or Spark through the standard Beam options (``-- --runner=DataflowRunner ...``). Every
step is a module-level function or `beam.PTransform` with a unique label, and nothing
but the final manifest write depends on the driver: no driver-side loops over data.

Example:
    >>> from tfstream.pipelines import load_config, preprocess
    >>> manifest = preprocess(load_config("configs/flights_dense.yaml"),
    ...                       output_dir="runs/flights/dataset")   # doctest: +SKIP
"""

from __future__ import annotations

import collections
import copy
import datetime
import hashlib
import heapq
import importlib.metadata
import io
import json
import logging
import math
import os
import uuid
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from tfstream.pipelines import drift, fs, publish, sources
from tfstream.pipelines.config import JobConfig, resolve_source_paths
from tfstream.pipelines.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PREVIOUS_MANIFEST_NAME,
    Manifest,
    load_manifest,
    write_manifest,
)
from tfstream.pipelines.publish import QUARANTINE_DIR
from tfstream.pipelines.shards import SHARD_TEMPLATE, describe_shard, shard_file, write_record
from tfstream.transforms.analyzers import MAX_VOCABULARY, DatasetStats
from tfstream.transforms.codecs import encode_example
from tfstream.transforms.schema import Schema
from tfstream.transforms.split import Splitter
from tfstream.transforms.validation import (
    ImputationError,
    RowError,
    RowRules,
    convert_row,
    impute_row,
    imputation_values,
)

_log = logging.getLogger(__name__)

# Tags of `route_chunk`'s non-split outputs (a split name never starts with "_").
QUARANTINED = "_quarantine"
_READ = "_read"

REJECTED_RUN_DIR = "rejected-run"


class PreprocessError(RuntimeError):
    """The pipeline failed; the message is the cause, naming the file and row."""


def default_num_shards(fraction: float) -> int:
    """Shards for a split when the config names none: 8 for the whole dataset, pro rata."""
    return max(1, round(8 * fraction))


def num_shards_of(config: JobConfig, split: str) -> int:
    """The number of shards a split is written in: ``output.num_shards``, else the default."""
    return config.output.num_shards.get(split, default_num_shards(config.split.fractions[split]))


# --------------------------------------------------------------------------- transforms


class ReadSource(beam.PTransform):
    """Source files → chunks ``(file, first_row, {column: values})``, redistributed.

    The reshuffle breaks fusion, so validation and encoding spread over all workers even
    when the source is one unsplittable file (a zip, an npz).
    """

    def __init__(self, paths: Sequence[str], source, columns: Sequence[str], sequence_columns: Sequence[str]):
        super().__init__()
        self._paths = list(paths)
        self._source = source
        self._columns = list(columns)
        self._sequence_columns = list(sequence_columns)

    def expand(self, pbegin):
        return (
            pbegin
            | "ListFiles" >> beam.Create(self._paths)
            | "ReadChunks" >> beam.FlatMap(sources.read_chunks, source=self._source, columns=self._columns,
                                           sequence_columns=self._sequence_columns)
            | "Redistribute" >> beam.Reshuffle()
        )


def _json_value(value: Any) -> Any:
    """A raw source value as it is shown in the quarantine (arrays by their shape)."""
    if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
        return f"<array of shape {tuple(value.shape)}>"
    if hasattr(value, "item"):  # a NumPy scalar
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):  # strict JSON has no NaN or Infinity
        return repr(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def quarantine_record(file: str, row: int, action: str, reason: str, column: str, message: str,
                      raw: dict[str, Any]) -> dict[str, Any]:
    """One line of the quarantine: where the row is, what happened to it, and why."""
    return {"file": file, "row": row, "action": action, "reason": reason, "column": column, "message": message,
            "values": {c: _json_value(v) for c, v in raw.items()}}


def rows_in_chunk(chunk: tuple[str, int, dict[str, Any]]) -> int:
    """The number of rows in a chunk ``(file, first_row, {column: values})``."""
    columns = chunk[2]
    return len(next(iter(columns.values()))) if columns else 0


def route_chunk(chunk: tuple[str, int, dict[str, Any]], rules: RowRules, splitter: Splitter,
                split_key: Sequence[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Validate every row of a chunk and route it: to its split, or to the quarantine,
    rejected (it breaks a rule) or dropped (a rule says drop).

    The split key is the ``split_key`` columns' values, or, without key columns, the
    file's base name and the row number (so a row keeps its split when the file moves).

    Args:
        chunk: ``(file, first row number, {column: values})`` as `sources.read_chunks`
            yields it.
        rules: the job's row rules.
        splitter: the job's splitter.
        split_key: the split key columns (may be empty).

    Yields:
        ``(split name, typed row)``, or ``(QUARANTINED, quarantine record)``.

    Example:
        >>> from tfstream.transforms.schema import Feature, Label
        >>> from tfstream.transforms.validation import FeatureRule, LabelRule
        >>> rules = RowRules((FeatureRule(Feature("x", "numeric", "float32"), ("x",)),),
        ...                  LabelRule(Label("y", "regression"), "y"))
        >>> [(tag, out.get("message", out)) for tag, out in
        ...  route_chunk(("f.csv", 1, {"x": ["1", "?"], "y": ["2", "3"]}), rules, Splitter({"train": 1.0}), ())]
        [('train', {'x': 1.0, 'y': 2.0}), ('_quarantine', "f.csv: row 2: column 'x': expected a number, got '?'")]
    """
    name, first_row, columns = chunk
    keys = list(columns)
    split_key = tuple(split_key)
    base = os.path.basename(name)
    for i in range(rows_in_chunk(chunk)):
        raw = {c: columns[c][i] for c in keys}
        row_number = first_row + i
        try:
            row, dropped = convert_row(raw, rules)
        except RowError as e:
            yield QUARANTINED, quarantine_record(
                name, row_number, "rejected", e.reason, e.column, f"{name}: row {row_number}: {e}", raw)
            continue
        if row is None:
            reason, _, column = dropped.partition(":")
            yield QUARANTINED, quarantine_record(
                name, row_number, "dropped", reason, column,
                f"{name}: row {row_number}: dropped by the rule for {reason.replace('_', ' ')} values "
                f"in column {column!r}", raw)
            continue
        key = [raw[c] for c in split_key] if split_key else [base, row_number]
        yield splitter.assign(key), row


class _ConvertChunk(beam.DoFn):
    """`route_chunk` as tagged outputs: per split, one list of the chunk's typed rows
    of that split (split tags get batches, not rows); per quarantined row, its record
    (tag ``_quarantine``); and the chunk's row count (tag ``_read``)."""

    def __init__(self, rules: RowRules, splitter: Splitter, split_key: Sequence[str]):
        self._rules = rules
        self._splitter = splitter
        self._split_key = tuple(split_key)

    def process(self, chunk):
        yield beam.pvalue.TaggedOutput(_READ, rows_in_chunk(chunk))
        batches: dict[str, list[dict[str, Any]]] = {}
        for tag, value in route_chunk(chunk, self._rules, self._splitter, self._split_key):
            if tag == QUARANTINED:
                yield beam.pvalue.TaggedOutput(tag, value)
            else:
                batches.setdefault(tag, []).append(value)
        for tag, rows in batches.items():
            yield beam.pvalue.TaggedOutput(tag, rows)


class _StatsCombineFn(beam.CombineFn):
    """Beam adapter of `transforms.analyzers.DatasetStats` (lifted: partial per bundle).

    Its inputs are batches: each element is a list of typed rows."""

    def __init__(self, schema: Schema):
        self._stats = DatasetStats(schema)

    def create_accumulator(self):
        return self._stats.create_accumulator()

    def add_input(self, acc, rows):
        return self._stats.add_inputs(acc, rows)

    def merge_accumulators(self, accs):
        return self._stats.merge_accumulators(accs)

    def compact(self, acc):
        return self._stats.compact(acc)

    def extract_output(self, acc):
        return self._stats.extract_output(acc)


class _TopTokens(beam.CombineFn):
    """``(count, token)`` pairs of one feature → the number of distinct tokens and the
    ``k`` most frequent, most frequent first (ties: alphabetical). Memory: O(k)."""

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return 0, []

    def add_input(self, acc, count_token):
        unique, heap = acc
        item = (count_token[0], _Reversed(count_token[1]))
        if len(heap) < self._k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
        return unique + 1, heap

    def merge_accumulators(self, accs):
        unique, merged = 0, []
        for u, heap in accs:
            unique += u
            merged.extend(heap)
        return unique, heapq.nlargest(self._k, merged)

    def extract_output(self, acc):
        unique, heap = acc
        ranked = sorted(heap, reverse=True)
        return {"num_unique": unique, "vocabulary": [[t.token, int(n)] for n, t in ranked]}


class _Reversed:
    """A token that sorts in reverse, so that among equal counts the heap keeps, and
    `_TopTokens` lists first, the alphabetically smaller token."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __lt__(self, other):
        return self.token > other.token

    def __gt__(self, other):
        return self.token < other.token

    def __eq__(self, other):
        return self.token == other.token

    def __reduce__(self):
        return _Reversed, (self.token,)


def _token_counts(rows: Sequence[dict[str, Any]], names: Sequence[str]):
    """A batch of rows → ``((feature, token), count)`` pairs, counted within the batch."""
    counts: collections.Counter = collections.Counter()
    for name in names:
        counts.update(row[name] for row in rows)
        yield from (((name, token), n) for token, n in counts.items())
        counts.clear()


def _by_feature(kv):
    (name, token), n = kv
    return name, (n, token)


class ComputeVocabularies(beam.PTransform):
    """Batches of typed rows → ``(feature, {"num_unique", "vocabulary"})`` for each
    categorical feature: token counts per batch, summed per ``(feature, token)``, then
    the top ``k`` per feature (tf.Transform's way: no worker holds a whole table of
    distinct tokens)."""

    def __init__(self, sizes: dict[str, Optional[int]]):
        super().__init__()
        self._sizes = dict(sizes)

    def expand(self, rows):
        k = max((size or MAX_VOCABULARY) for size in self._sizes.values())
        return (
            rows
            | "Tokens" >> beam.FlatMap(_token_counts, names=sorted(self._sizes))
            | "Count" >> beam.CombinePerKey(sum)
            | "ByFeature" >> beam.Map(_by_feature)
            | "Top" >> beam.CombinePerKey(_TopTokens(k))
            | "Trim" >> beam.Map(_trimmed, sizes=self._sizes)
        )


def _trimmed(name_vocab, sizes):
    name, vocab = name_vocab
    size = sizes[name] or MAX_VOCABULARY
    return name, {**vocab, "vocabulary": vocab["vocabulary"][:size]}


def top_tokens(counts: Mapping[str, Mapping[str, int]], sizes: Mapping[str, Optional[int]]
               ) -> list[tuple[str, dict[str, Any]]]:
    """`ComputeVocabularies` in one process: token counts per feature → the same
    ``(feature, {"num_unique", "vocabulary"})`` pairs, ranked by the same `_TopTokens`.

    Example:
        >>> top_tokens({"c": {"a": 1, "b": 3, "z": 1}}, {"c": 2})
        [('c', {'num_unique': 3, 'vocabulary': [['b', 3], ['a', 1]]})]
    """
    k = max((size or MAX_VOCABULARY) for size in sizes.values()) if sizes else MAX_VOCABULARY
    top = _TopTokens(k)
    out = []
    for name in sorted(sizes):
        acc = top.create_accumulator()
        for token, n in counts.get(name, {}).items():
            acc = top.add_input(acc, (n, token))
        out.append(_trimmed((name, top.extract_output(acc)), sizes))
    return out




def record_hash(record: bytes, key: bytes) -> int:
    """A record's keyed hash (BLAKE2b, 8 bytes, keyed by the dataset name): it picks the
    record's shard (``hash % num_shards``) and its place within the shard.

    `pipelines.arrays` picks shards the same way, so both writers put a record in the
    same shard.
    """
    return int.from_bytes(hashlib.blake2b(record, digest_size=8, key=key[:64]).digest(), "big")


def _encode_batch(rows: Sequence[dict[str, Any]], schema: Schema, key: bytes, num_shards: int
                  ) -> Iterator[tuple[int, list[tuple[int, bytes]]]]:
    """A batch of typed rows → ``(shard, [(hash, record), ...])``, one pair per shard
    that receives records from this batch."""
    by_shard: dict[int, list[tuple[int, bytes]]] = {}
    for row in rows:
        record = encode_example(row, schema)
        h = record_hash(record, key)
        by_shard.setdefault(h % num_shards, []).append((h, record))
    return iter(by_shard.items())


def _impute_batch(rows: Sequence[dict[str, Any]], values, schema: Schema) -> list[dict[str, Any]]:
    return [impute_row(row, values, schema) for row in rows]


# Records are framed into this buffer and written to the shard file when it is this full:
# few, large writes (few calls into zlib for gzip shards).
_WRITE_BUFFER_BYTES = 1 << 20


def _write_shard(shard_parts, *, dataset_dir: str, split: str, name: str, num_shards: int, compression: str) -> str:
    """``(shard index, [[(hash, record), ...], ...])`` → the shard file, written; its path.

    The records are sorted by ``(hash, record)``: a pseudo-random order, fixed by their
    content, the same on every run and runner. A shard that received nothing is
    written empty: every shard of the split exists.
    """
    from apache_beam.io.filesystems import FileSystems

    index, parts = shard_parts
    records = sorted(hr for part in parts for hr in part)
    path = fs.join(dataset_dir, *shard_file(split, name, index, num_shards, compression).split("/"))
    kind = CompressionTypes.GZIP if compression == "gzip" else CompressionTypes.UNCOMPRESSED
    buf = io.BytesIO()
    # Into a temporary name, then renamed: two attempts at the same bundle (a retry, a
    # speculative copy on Spark, Flink or Dataflow) never write into one file at once,
    # and the last rename of identical bytes wins.
    temp = f"{path}.tmp-{uuid.uuid4().hex[:12]}"
    with FileSystems.create(temp, compression_type=kind) as f:
        for _, record in records:
            write_record(buf, record)
            if buf.tell() >= _WRITE_BUFFER_BYTES:
                f.write(buf.getvalue())
                buf.seek(0)
                buf.truncate()
        f.write(buf.getvalue())
    FileSystems.rename([temp], [path])  # Beam's: this runs on the worker, local or remote
    return path


class WriteShards(beam.PTransform):
    """Batches of typed rows of one split → its sharded TFRecord files; outputs one
    ``(split, shard description)`` per shard (`shards.describe_shard`).

    Like tensorflow-datasets, the records are shuffled at write time, so every shard is a
    random sample of the source even when the source is sorted (by date, by class), and a
    bounded shuffle buffer on the read side mixes well: a record's keyed hash
    (`record_hash`) picks its shard, and a shard's records are sorted by hash. Shard
    contents and order are thus the same on every run and every runner.

    Memory: a shard's records are grouped, sorted and written on one worker, all in
    memory: keep a shard to a few hundred MB (``output.num_shards``: more shards for more
    data). Every shard file exists, even one that received no record.
    """

    def __init__(self, split: str, schema: Schema, dataset_dir: str, name: str, num_shards: int, compression: str):
        super().__init__()
        self._split, self._schema, self._dir = split, schema, dataset_dir
        self._name, self._num_shards, self._compression = name, num_shards, compression

    def expand(self, batches):
        n = self._num_shards
        keyed = batches | "Encode" >> beam.FlatMap(
            _encode_batch, schema=self._schema, key=self._name.encode("utf-8"), num_shards=n)
        every_shard = batches.pipeline | "ShardIndices" >> beam.Create([(i, []) for i in range(n)])
        return (
            (keyed, every_shard)
            | "WithEmptyShards" >> beam.Flatten()
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.Map(_write_shard, dataset_dir=self._dir, split=self._split, name=self._name,
                                       num_shards=n, compression=self._compression)
            | "Describe" >> beam.Map(describe_shard, compression=self._compression, root=self._dir)
            | "Tag" >> beam.Map(_tagged, tag=self._split)
        )


def _tagged(value, tag):
    return tag, value


def manifest_settings(config: JobConfig, fingerprint: dict[str, Any], writer: dict[str, Any]) -> dict[str, Any]:
    """The arguments of `manifest_json` that come from the config, not from the data.

    Args:
        config: the job config.
        fingerprint: the source fingerprint.
        writer: what wrote the dataset and how, recorded under ``options`` next to the
            config: ``{"beam": {options}}`` for `preprocess`.
    """
    return {
        "name": config.name,
        "schema_json": config.schema().to_json(),
        "compression": config.output.compression,
        "fractions": dict(config.split.fractions),
        "fingerprint": fingerprint,
        "options": {"config": config.to_json(), **writer},
        "versions": _versions(),
        "train_split": config.train.train_split,
        "feature_policies": _feature_policies(config),
    }


def _manifest_json(_, **kwargs) -> dict[str, Any]:
    return manifest_json(**kwargs)  # beam.Map's element (a seed) is not used


def manifest_json(*, name, schema_json, compression, fractions, fingerprint, options, versions, shards, stats,
                  vocabularies, train_split, feature_policies, quarantined, examples, quarantine_files,
                  dataset_dir, rows_read) -> dict[str, Any]:
    """The manifest of a run, from everything it computed (see `manifest_settings` for
    the arguments that come from the config).

    Args:
        shards: ``(split, shard description)`` pairs (`shards.describe_shard`).
        stats: ``(split, statistics)`` pairs (`DatasetStats.extract_output`).
        vocabularies: ``(feature, {"num_unique", "vocabulary"})`` pairs of the
            training split.
        quarantined: ``((action, quarantine_key), count)`` pairs.
        examples: ``(key, (file, row, message))`` pairs: the first rejected row per key.
        quarantine_files: the quarantine files' paths.
        dataset_dir: the folder the run writes into (paths are made relative to it).
        rows_read: the number of rows read.
    """
    splits = {}
    for split in fractions:
        split_shards = sorted((d for s, d in shards if s == split), key=lambda d: d["file"])
        split_stats = copy.deepcopy(next(st for s, st in stats if s == split))  # side inputs are read-only
        if split == train_split:
            for feature, policy in feature_policies.items():
                split_stats["features"][feature].update(policy)
            for feature, vocab in vocabularies:
                split_stats["features"][feature].update(vocab)
        splits[split] = {
            "fraction": fractions[split],
            "num_examples": sum(d["records"] for d in split_shards),
            "num_bytes": sum(d["bytes"] for d in split_shards),
            "num_shards": len(split_shards),
            "shards": split_shards,
            "statistics": split_stats,
        }
    written = sum(s["num_examples"] for s in splits.values())
    by_action: dict[str, dict[str, int]] = {"dropped": {}, "rejected": {}}
    for (action, key), n in sorted(quarantined):
        by_action[action][key] = int(n)
    root = dataset_dir.rstrip("/") + "/"
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "compression": compression,
        "schema": schema_json,
        "splits": splits,
        "source": {
            "fingerprint": fingerprint,
            "rows_read": int(rows_read),
            "rows_written": int(written),
            "rows_dropped": sum(by_action["dropped"].values()),
            "rows_rejected": sum(by_action["rejected"].values()),
            "dropped": by_action["dropped"],
            "rejected": by_action["rejected"],
            # the first rejected row of each kind, to quote when the run is refused
            "rejected_examples": {key: message for key, (_, _, message) in sorted(examples)},
            "quarantine": sorted(p[len(root):] if p.startswith(root) else p for p in quarantine_files),
        },
        "options": options,
        "versions": versions,
    }


def _write(manifest: dict[str, Any], dataset_dir: str) -> str:
    return write_manifest(dataset_dir, manifest)


# --------------------------------------------------------------------------- pipeline


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("tfstream", "apache-beam", "tensorflow", "keras", "pyarrow"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _feature_policies(config: JobConfig) -> dict[str, dict[str, Any]]:
    """What the training split's statistics record about each feature's preprocessing,
    for the model to repeat it: imputation, and the out-of-vocabulary buckets."""
    out: dict[str, dict[str, Any]] = {}
    for f in config.features:
        if "impute" in (f.on_missing, f.on_nan):
            out.setdefault(f.name, {})["impute"] = "mean"
        if f.type == "string":
            out.setdefault(f.name, {})["oov_buckets"] = f.oov_buckets
    return out


def quarantine_key(record: dict[str, Any]) -> tuple[str, str]:
    """``(action, "reason:column")``: what the manifest counts quarantined rows by."""
    return record["action"], f"{record['reason']}:{record['column']}"


def first_example(record: dict[str, Any]) -> tuple[str, tuple[str, int, str]]:
    """``("reason:column", (file, row, message))``: the smallest per key is quoted."""
    return f"{record['reason']}:{record['column']}", (record["file"], record["row"], record["message"])


def build_pipeline(
    pipeline: beam.Pipeline,
    config: JobConfig,
    dataset_dir: str,
    paths: Sequence[str],
    fingerprint: dict[str, Any],
    beam_options: Optional[dict[str, Any]] = None,
) -> None:
    """Add the whole preprocessing graph to ``pipeline`` (used by `preprocess` and tests)."""
    schema = config.schema()
    rules = config.row_rules()
    fractions = dict(config.split.fractions)
    train_split = config.train.train_split
    chunks = pipeline | "Read" >> ReadSource(paths, config.source, config.source_columns(), config.sequence_columns())
    routed = chunks | "Validate" >> beam.ParDo(
        _ConvertChunk(rules, Splitter(fractions, config.split.salt), config.split.key)
    ).with_outputs(_READ, QUARANTINED, *fractions)

    stats_of = {
        split: routed[split] | f"Stats[{split}]" >> beam.CombineGlobally(_StatsCombineFn(schema))
        for split in fractions
    }
    imputed = config.imputed_features()
    if imputed:  # the training split's means, computed once, then a side input of every split's rows
        means = stats_of[train_split] | "ImputationValues" >> beam.Map(imputation_values, names=imputed)
    shard_descs, split_stats = [], []
    for split in fractions:
        rows = routed[split]
        if imputed:  # with the training split's means, on every split: no leak from eval
            rows = rows | f"Impute[{split}]" >> beam.Map(
                _impute_batch, values=beam.pvalue.AsSingleton(means), schema=schema)
        n = num_shards_of(config, split)
        shard_descs.append(rows | f"Write[{split}]" >> WriteShards(
            split, schema, dataset_dir, config.name, n, config.output.compression))
        split_stats.append(stats_of[split] | f"TagStats[{split}]" >> beam.Map(_tagged, tag=split))
    shards = shard_descs | "AllShards" >> beam.Flatten()
    stats = split_stats | "AllStats" >> beam.Flatten()
    sizes = config.vocabulary_sizes()
    vocabularies = (routed[train_split] | "Vocabularies" >> ComputeVocabularies(sizes) if sizes
                    else pipeline | "NoVocabularies" >> beam.Create([]))

    quarantine = routed[QUARANTINED]
    quarantined = quarantine | "QuarantineKeys" >> beam.Map(quarantine_key) \
        | "CountQuarantined" >> beam.combiners.Count.PerElement()
    examples = (
        quarantine
        | "Rejected" >> beam.Filter(lambda r: r["action"] == "rejected")
        | "ExampleKeys" >> beam.Map(first_example)
        | "FirstExample" >> beam.CombinePerKey(min)
    )
    quarantine_files = (
        quarantine
        | "QuarantineJson" >> beam.Map(lambda r: json.dumps(r, sort_keys=True))
        | "WriteQuarantine" >> beam.io.WriteToText(
            fs.join(dataset_dir, QUARANTINE_DIR, "rows"), file_name_suffix=".jsonl", num_shards=1,
            shard_name_template=SHARD_TEMPLATE)
    )
    rows_read = routed[_READ] | "CountRead" >> beam.CombineGlobally(sum)

    side = beam.pvalue
    _ = (
        pipeline
        | "ManifestSeed" >> beam.Create([None])
        | "BuildManifest" >> beam.Map(
            _manifest_json,
            **manifest_settings(config, fingerprint, {"beam": beam_options or {}}),
            shards=side.AsList(shards),
            stats=side.AsList(stats),
            vocabularies=side.AsList(vocabularies),
            quarantined=side.AsList(quarantined),
            examples=side.AsList(examples),
            quarantine_files=side.AsList(quarantine_files),
            dataset_dir=dataset_dir,
            rows_read=side.AsSingleton(rows_read),
        )
        | "WriteManifest" >> beam.Map(_write, dataset_dir=dataset_dir)
    )


def _check_paths_for_runner(options: PipelineOptions, dataset_dir: str, paths: Sequence[str]) -> None:
    from apache_beam.options.pipeline_options import StandardOptions

    runner = str(options.view_as(StandardOptions).runner or "DirectRunner")
    if "dataflow" in runner.lower():
        local = [p for p in [dataset_dir, *paths] if not fs.is_remote(p)]
        if local:
            raise PreprocessError(
                f"--runner={runner} runs on remote workers, which cannot see local paths {local}; "
                f"put the source and the output on a shared file system (gs://...)"
            )


class BeamOptionError(ValueError):
    """A Beam option with a value Beam cannot parse."""


def unknown_beam_options(args: Sequence[str]) -> list[str]:
    """The arguments in ``args`` that Beam's `PipelineOptions` cannot use: options that
    no registered options class defines (with their values) and stray words.

    Beam itself only logs and discards them, so a misspelt ``--runer`` would quietly run
    on the DirectRunner.

    Raises:
        BeamOptionError: a known option with a bad value (``--direct_num_workers=two``).
    """
    import contextlib
    import io

    discarded: list[str] = []

    class _Catch(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Discarding unparseable args") and record.args:
                discarded.extend(str(a) for a in record.args[0])

    beam_log = logging.getLogger("apache_beam.options.pipeline_options")
    catch, propagate, level = _Catch(), beam_log.propagate, beam_log.level
    beam_log.addHandler(catch)
    beam_log.propagate = False
    beam_log.setLevel(logging.WARNING)  # the CLI silences the root logger
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):  # Beam's argparse prints its whole usage
            PipelineOptions(list(args)).get_all_options(drop_default=True)
    except SystemExit:
        reason = [line for line in captured.getvalue().splitlines() if "error:" in line]
        raise BeamOptionError(
            f"bad Apache Beam option: {reason[-1].split('error:', 1)[1].strip() if reason else ' '.join(args)}"
        ) from None
    finally:
        beam_log.removeHandler(catch)
        beam_log.propagate = propagate
        beam_log.setLevel(level)
    return discarded


def _root_cause(error: BaseException) -> BaseException:
    """The first tfstream error in an exception chain (Beam wraps worker errors)."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (RowError, sources.SourceError, ImputationError)):
            return current
        current = current.__cause__ or current.__context__
    return error


def _worker_message(error: BaseException) -> Optional[str]:
    """Beam's portable runners re-raise worker errors as text: find our message in it."""
    text = str(error)
    for marker in ("RowError: ", "SourceError: ", "ImputationError: "):
        if marker in text:
            return text.split(marker, 1)[1].split("\n", 1)[0].split(" [while running", 1)[0].strip()
    return None


def _previous_manifest(path: str) -> Optional[dict[str, Any]]:
    """The manifest a run is compared with: ``path`` is a manifest file or a dataset
    directory; None when there is none (a first run)."""
    if not path.endswith(".json"):
        path = fs.join(path, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    try:
        data = json.loads(fs.read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _log.warning("drift: %s is not valid JSON (%s); not compared", path, e)
        return None
    if data.get("format_version") != FORMAT_VERSION:
        _log.warning("drift: %s has manifest format %r, not %r; not compared", path, data.get("format_version"),
                     FORMAT_VERSION)
        return None
    data["_path"] = path
    return data


def _bad_rows_problem(data: dict[str, Any], max_bad_fraction: float, quarantine_dir: str) -> Optional[str]:
    """Why a run's rejected rows refuse it, or None."""
    src = data["source"]
    read, rejected = src["rows_read"], src["rows_rejected"]
    if not rejected or (read and rejected / read <= max_bad_fraction):
        return None
    worst = sorted(src["rejected"].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    reasons = "; ".join(f"{key} x{n:,} (first: {src['rejected_examples'].get(key, '?')})" for key, n in worst)
    more = len(src["rejected"]) - len(worst)
    return (
        f"{rejected:,} of {read:,} rows ({rejected / read:.2%}) break a rule, more than validation.max_bad_fraction "
        f"{max_bad_fraction:g}. Worst: {reasons}{f'; and {more} more kind(s)' if more else ''}. Every such row is in "
        f"{quarantine_dir}. Fix the source, relax the rule on the feature (on_missing, on_nan, on_too_long), or raise "
        f"validation.max_bad_fraction"
    )


def _refuse(staging: str, dataset_dir: str, data: dict[str, Any], message: str) -> PreprocessError:
    """Keep a refused run's manifest and quarantine in ``<dataset>/rejected-run/`` (the
    shards go), leave the published dataset as it was, and return the error to raise."""
    target = fs.join(dataset_dir, REJECTED_RUN_DIR)
    fs.remove_tree(target)
    for rel in data["source"]["quarantine"]:
        fs.rename(fs.join(staging, rel), fs.join(target, rel))
    fs.write_atomic(fs.join(target, MANIFEST_NAME), json.dumps(data, indent=1).encode("utf-8"))
    fs.remove_tree(staging)
    return PreprocessError(f"{message}\n(the refused run's manifest and quarantine are in {target}; the dataset in "
                           f"{dataset_dir} was not changed)")


def preprocess(
    config: JobConfig,
    output_dir: Optional[str] = None,
    beam_args: Iterable[str] = (),
    previous: Optional[str] = None,
) -> Manifest:
    """Run the preprocessing pipeline, check the run, publish it, and return the manifest.

    A run is refused (the previous dataset stays in place) when more than
    ``validation.max_bad_fraction`` of the rows read break a rule, or when its
    statistics drifted from the previous run's and ``validation.drift.on_drift`` is
    ``error``. Drift warnings are logged and recorded in the manifest under ``drift``.

    Args:
        config: the job config.
        output_dir: the dataset directory; defaults to ``output.dir`` of the config,
            then ``runs/<name>/dataset``.
        beam_args: Beam pipeline options, passed to `PipelineOptions` unchanged
            (``--runner=DataflowRunner --project=... --region=...``). The default
            runner is the DirectRunner.
        previous: the manifest (file, or dataset directory) to compare the new
            statistics with; defaults to the dataset directory's current manifest.

    Raises:
        sources.SourceError: a missing column, an empty file, an unreadable file.
        PreprocessError: the pipeline failed, or the run was refused; the message says
            which rows or features, and what to change.
    """
    dataset_dir = resolve_dataset_dir(config, output_dir)
    paths = resolve_source_paths(config.source)
    options = PipelineOptions(list(beam_args))
    _check_paths_for_runner(options, dataset_dir, paths)
    sources.check_source(paths, config.source, config.source_columns(), config.sequence_columns())
    fingerprint = sources.fingerprint(paths)
    staging = start_run(dataset_dir, previous)
    _log.info("preprocess %r: %d source file(s) -> %s, with Apache Beam's %s", config.name, len(paths), dataset_dir,
              options.get_all_options()["runner"] or "DirectRunner")
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config, staging, paths, fingerprint,
                           options.get_all_options(drop_default=True))
    except Exception as e:  # noqa: BLE001 - re-raised with the cause that names the row
        fs.remove_tree(staging)
        cause = _root_cause(e)
        if cause is not e or isinstance(cause, ImputationError):  # Beam appends the step's name
            raise PreprocessError(str(cause).split(" [while running", 1)[0]) from e
        message = _worker_message(e)
        if message:
            raise PreprocessError(message) from e
        raise
    return finish_run(config, staging, dataset_dir, previous)


def resolve_dataset_dir(config: JobConfig, output_dir: Optional[str]) -> str:
    """The dataset directory of a run: ``output_dir``, else the config's ``output.dir``,
    else ``runs/<name>/dataset``; local paths made absolute."""
    dataset_dir = output_dir or config.output.dir or os.path.join("runs", config.name, "dataset")
    return dataset_dir if fs.is_remote(dataset_dir) else os.path.abspath(dataset_dir)


def start_run(dataset_dir: str, previous: Optional[str] = None) -> str:
    """Create the dataset directory, remove staging folders of killed runs, and return
    a new staging folder for this run.

    The run writes into the staging folder; the previous dataset stays readable until
    the run has succeeded (`finish_run`), and a failed run leaves it as it was.

    Raises:
        FileNotFoundError: ``previous`` (the manifest to compare with) was given but
            holds no manifest this version reads: checked before the run, not after.
    """
    if previous is not None and _previous_manifest(previous) is None:
        raise FileNotFoundError(f"previous manifest {previous!r}: none there that this tfstream reads; give a "
                                f"manifest.json or a dataset directory written by `tfstream preprocess`")
    fs.makedirs(dataset_dir)
    publish.sweep_staging(dataset_dir)
    return publish.staging_dir(dataset_dir)


def finish_run(config: JobConfig, staging: str, dataset_dir: str, previous: Optional[str] = None) -> Manifest:
    """Check a finished run in ``staging`` (its ``manifest.json`` written), then publish
    it into ``dataset_dir``, or refuse it (see `preprocess`).

    Raises:
        PreprocessError: the run was refused: too many rejected rows, or drift with
            ``on_drift: error``; the previous dataset is unchanged.
    """
    data = json.loads(fs.read_bytes(fs.join(staging, MANIFEST_NAME)).decode("utf-8"))
    src = data["source"]
    if src["rows_written"] + src["rows_dropped"] + src["rows_rejected"] != src["rows_read"]:
        fs.remove_tree(staging)
        raise PreprocessError(  # never expected: a row lost or counted twice is a bug, not a dataset
            f"internal error: {src['rows_read']:,} rows read but {src['rows_written']:,} written + "
            f"{src['rows_dropped']:,} dropped + {src['rows_rejected']:,} rejected; the run was not published, "
            f"please report it")
    problems = []
    # the refused run's rows end up in rejected-run/quarantine (see _refuse)
    bad = _bad_rows_problem(data, config.validation.max_bad_fraction,
                            fs.join(dataset_dir, REJECTED_RUN_DIR, QUARANTINE_DIR))
    if bad:
        problems.append(bad)
    before = _previous_manifest(previous or dataset_dir)
    if before is not None:
        findings = drift.compare_manifests(before, data, config.train.train_split, config.validation.drift)
        against = before["_path"]
        if previous is None:  # the dataset's own manifest, which publishing keeps under another name
            against = fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME)
        data["drift"] = {"against": against, "created_at": before.get("created_at"), "findings": findings}
        for line in drift.format_findings([f for f in findings if f["severity"] == "warning"]):
            _log.warning("drift: %s", line)
        errors = drift.format_findings([f for f in findings if f["severity"] == "error"])
        if errors:
            problems.append(f"the statistics drifted from {before['_path']} (validation.drift.on_drift: error): "
                            + "; ".join(errors))
    if problems:
        raise _refuse(staging, dataset_dir, data, "; and ".join(problems))
    write_manifest(staging, data)
    publish.publish(staging, dataset_dir, config.split.fractions)
    fs.remove_tree(fs.join(dataset_dir, REJECTED_RUN_DIR))  # an earlier refused run's, now stale
    return load_manifest(dataset_dir)
