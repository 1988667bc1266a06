"""The write side: an Apache Beam pipeline from a raw source to a tfstream dataset.

    read (chunks of rows) → reshuffle → validate + split (stable hash)
        rows that break a rule, and rows a rule drops → quarantine/*.jsonl, counted
        per split: full-pass statistics (a lifted CombineFn)
                   vocabularies of the training split (keyed counts, top-k)
                   impute (training-split means, a side input) → encode
                   → WriteToTFRecord (sharded) → describe shards
    → manifest.json, from side inputs
    then, on the driver: the bad-row fraction and drift against the previous run are
    checked, and the run is published (or refused, leaving the previous dataset as it was)

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

import copy
import datetime
import hashlib
import heapq
import importlib.metadata
import json
import logging
import os
from typing import Any, Iterable, Optional, Sequence

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
from tfstream.pipelines.shards import SHARD_TEMPLATE, describe_shard, shard_suffix
from tfstream.transforms.analyzers import MAX_VOCABULARY, DatasetStats
from tfstream.transforms.codecs import encode_example
from tfstream.transforms.schema import Schema
from tfstream.transforms.split import Splitter
from tfstream.transforms.validation import RowError, RowRules, convert_row, impute_row, imputation_values

_log = logging.getLogger(__name__)

_QUARANTINE = "_quarantine"
_READ = "_read"

REJECTED_RUN_DIR = "rejected-run"


class PreprocessError(RuntimeError):
    """The pipeline failed; the message is the cause, naming the file and row."""


def default_num_shards(fraction: float) -> int:
    """Shards for a split when the config names none: 8 for the whole dataset, pro rata."""
    return max(1, round(8 * fraction))


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
    if isinstance(value, float) and value != value:
        return "NaN"
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def quarantine_record(file: str, row: int, action: str, reason: str, column: str, message: str,
                      raw: dict[str, Any]) -> dict[str, Any]:
    """One line of the quarantine: where the row is, what happened to it, and why."""
    return {"file": file, "row": row, "action": action, "reason": reason, "column": column, "message": message,
            "values": {c: _json_value(v) for c, v in raw.items()}}


class _ConvertChunk(beam.DoFn):
    """Validates every row of a chunk and routes it to its split (tagged output), or to
    the quarantine: rejected (it breaks a rule) or dropped (a rule says drop)."""

    def __init__(self, rules: RowRules, splitter: Splitter, split_key: Sequence[str]):
        self._rules = rules
        self._splitter = splitter
        self._split_key = tuple(split_key)

    def process(self, chunk):
        name, first_row, columns = chunk
        keys = list(columns)
        n = len(columns[keys[0]]) if keys else 0
        yield beam.pvalue.TaggedOutput(_READ, n)
        base = os.path.basename(name)
        for i in range(n):
            raw = {c: columns[c][i] for c in keys}
            row_number = first_row + i
            try:
                row, dropped = convert_row(raw, self._rules)
            except RowError as e:
                yield beam.pvalue.TaggedOutput(_QUARANTINE, quarantine_record(
                    name, row_number, "rejected", e.reason, e.column, f"{name}: row {row_number}: {e}", raw))
                continue
            if row is None:
                reason, _, column = dropped.partition(":")
                yield beam.pvalue.TaggedOutput(_QUARANTINE, quarantine_record(
                    name, row_number, "dropped", reason, column,
                    f"{name}: row {row_number}: dropped by the rule for {reason.replace('_', ' ')} values "
                    f"in column {column!r}", raw))
                continue
            key = [raw[c] for c in self._split_key] if self._split_key else [base, row_number]
            yield beam.pvalue.TaggedOutput(self._splitter.assign(key), row)


class _StatsCombineFn(beam.CombineFn):
    """Beam adapter of `transforms.analyzers.DatasetStats` (lifted: partial per bundle)."""

    def __init__(self, schema: Schema):
        self._stats = DatasetStats(schema)

    def create_accumulator(self):
        return self._stats.create_accumulator()

    def add_input(self, acc, row):
        return self._stats.add_input(acc, row)

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


def _tokens(row: dict[str, Any], names: Sequence[str]):
    return ((name, row[name]) for name in names)


class ComputeVocabularies(beam.PTransform):
    """Typed rows → ``(feature, {"num_unique", "vocabulary"})`` for each categorical
    feature: a keyed count of every token, then the top ``k`` per feature (tf.Transform's
    way: no worker holds a whole table of distinct tokens)."""

    def __init__(self, sizes: dict[str, Optional[int]]):
        super().__init__()
        self._sizes = dict(sizes)

    def expand(self, rows):
        k = max((size or MAX_VOCABULARY) for size in self._sizes.values())
        return (
            rows
            | "Tokens" >> beam.FlatMap(_tokens, names=sorted(self._sizes))
            | "Count" >> beam.combiners.Count.PerElement()
            | "ByFeature" >> beam.Map(lambda kv: (kv[0][0], (kv[1], kv[0][1])))
            | "Top" >> beam.CombinePerKey(_TopTokens(k))
            | "Trim" >> beam.Map(_trimmed, sizes=self._sizes)
        )


def _trimmed(name_vocab, sizes):
    name, vocab = name_vocab
    size = sizes[name] or MAX_VOCABULARY
    return name, {**vocab, "vocabulary": vocab["vocabulary"][:size]}


def _impute(row: dict[str, Any], stats: dict[str, Any], names: Sequence[str], schema: Schema) -> dict[str, Any]:
    return impute_row(row, imputation_values(stats, names), schema)


def _bucketed(record: bytes, salt: bytes, buckets: int) -> tuple[int, tuple[int, bytes]]:
    """``(bucket, (hash, record))``: the record's bucket and its sort key within it."""
    h = int.from_bytes(hashlib.blake2b(record, digest_size=8, key=salt[:64]).digest(), "big")
    return h % buckets, (h, record)


class ShuffleRecords(beam.PTransform):
    """Serialized records → the same records in a pseudo-random order, fixed by their
    content: hashed into ``buckets`` groups, each sorted by hash.

    Source files are often sorted (by date, by class). Like tensorflow-datasets, the
    records are shuffled at write time, so every shard is a random sample and a bounded
    shuffle buffer on the read side mixes well. (`beam.Reshuffle` is not enough: it
    redistributes work, and the DirectRunner keeps the arrival order.) One bucket is
    sorted in memory on one worker: ``buckets`` should keep a bucket to a few hundred MB.
    """

    def __init__(self, *, salt: str, buckets: int = 1024):
        super().__init__()
        self._salt = salt.encode("utf-8")
        self._buckets = buckets

    def expand(self, records):
        return (
            records
            | "Key" >> beam.Map(_bucketed, salt=self._salt, buckets=self._buckets)
            | "Group" >> beam.GroupByKey()
            | "Sort" >> beam.FlatMap(lambda kv: (r for _, r in sorted(kv[1], key=lambda hr: hr[0])))
        )


class WriteSplit(beam.PTransform):
    """Typed rows of one split → sharded TFRecords; outputs one description per shard."""

    def __init__(self, split: str, schema: Schema, dataset_dir: str, name: str, num_shards: int, compression: str):
        super().__init__()
        self._split, self._schema, self._dir = split, schema, dataset_dir
        self._name, self._num_shards, self._compression = name, num_shards, compression

    def expand(self, rows):
        prefix = fs.join(self._dir, self._split, self._name)
        files = (
            rows
            | "Encode" >> beam.Map(encode_example, schema=self._schema)
            | "Shuffle" >> ShuffleRecords(salt=self._name)
            | "Write" >> beam.io.WriteToTFRecord(
                prefix,
                file_name_suffix=shard_suffix(self._compression),
                num_shards=self._num_shards,
                shard_name_template=SHARD_TEMPLATE,
                compression_type=CompressionTypes.GZIP if self._compression == "gzip"
                else CompressionTypes.UNCOMPRESSED,
            )
        )
        return (
            files
            | "Describe" >> beam.Map(describe_shard, compression=self._compression, root=self._dir)
            | "Tag" >> beam.Map(lambda d, split: (split, d), split=self._split)
        )


def _manifest_json(_, *, name, schema_json, compression, fractions, fingerprint, options, versions, shards, stats,
                   vocabularies, train_split, feature_policies, quarantined, examples, quarantine_files,
                   dataset_dir, rows_read) -> dict[str, Any]:
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


def _quarantine_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["action"], f"{record['reason']}:{record['column']}"


def _first_example(record: dict[str, Any]) -> tuple[str, tuple[str, int, str]]:
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
    ).with_outputs(_READ, _QUARANTINE, *fractions)

    stats_of = {
        split: routed[split] | f"Stats[{split}]" >> beam.CombineGlobally(_StatsCombineFn(schema))
        for split in fractions
    }
    imputed = config.imputed_features()
    shard_descs, split_stats = [], []
    for split in fractions:
        rows = routed[split]
        if imputed:  # with the training split's means, on every split: no leak from eval
            rows = rows | f"Impute[{split}]" >> beam.Map(
                _impute, stats=beam.pvalue.AsSingleton(stats_of[train_split]), names=imputed, schema=schema)
        n = config.output.num_shards.get(split, default_num_shards(fractions[split]))
        shard_descs.append(rows | f"Write[{split}]" >> WriteSplit(
            split, schema, dataset_dir, config.name, n, config.output.compression))
        split_stats.append(stats_of[split] | f"TagStats[{split}]" >> beam.Map(lambda st, s: (s, st), s=split))
    shards = shard_descs | "AllShards" >> beam.Flatten()
    stats = split_stats | "AllStats" >> beam.Flatten()
    sizes = config.vocabulary_sizes()
    vocabularies = (routed[train_split] | "Vocabularies" >> ComputeVocabularies(sizes) if sizes
                    else pipeline | "NoVocabularies" >> beam.Create([]))

    quarantine = routed[_QUARANTINE]
    quarantined = quarantine | "QuarantineKeys" >> beam.Map(_quarantine_key) \
        | "CountQuarantined" >> beam.combiners.Count.PerElement()
    examples = (
        quarantine
        | "Rejected" >> beam.Filter(lambda r: r["action"] == "rejected")
        | "ExampleKeys" >> beam.Map(_first_example)
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
            name=config.name,
            schema_json=schema.to_json(),
            compression=config.output.compression,
            fractions=fractions,
            fingerprint=fingerprint,
            options={"config": config.to_json(), "beam": beam_options or {}},
            versions=_versions(),
            shards=side.AsList(shards),
            stats=side.AsList(stats),
            vocabularies=side.AsList(vocabularies),
            train_split=train_split,
            feature_policies=_feature_policies(config),
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
        if isinstance(current, (RowError, sources.SourceError)):
            return current
        current = current.__cause__ or current.__context__
    return error


def _worker_message(error: BaseException) -> Optional[str]:
    """Beam's portable runners re-raise worker errors as text: find our message in it."""
    text = str(error)
    for marker in ("RowError: ", "SourceError: "):
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
        f"max_bad_fraction"
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
    dataset_dir = output_dir or config.output.dir or os.path.join("runs", config.name, "dataset")
    if not fs.is_remote(dataset_dir):
        dataset_dir = os.path.abspath(dataset_dir)
    paths = resolve_source_paths(config.source)
    options = PipelineOptions(list(beam_args))
    _check_paths_for_runner(options, dataset_dir, paths)
    sources.check_source(paths, config.source, config.source_columns(), config.sequence_columns())
    fingerprint = sources.fingerprint(paths)
    fs.makedirs(dataset_dir)
    publish.sweep_staging(dataset_dir)
    # The run writes into a staging folder; the previous dataset stays readable until
    # the run has succeeded, and a failed run leaves it as it was.
    staging = publish.staging_dir(dataset_dir)
    _log.info("preprocess %r: %d source file(s) -> %s, with Apache Beam's %s", config.name, len(paths), dataset_dir,
              options.get_all_options()["runner"] or "DirectRunner")
    try:
        with beam.Pipeline(options=options) as pipeline:
            build_pipeline(pipeline, config, staging, paths, fingerprint,
                           options.get_all_options(drop_default=True))
    except Exception as e:  # noqa: BLE001 - re-raised with the cause that names the row
        fs.remove_tree(staging)
        cause = _root_cause(e)
        if cause is not e:
            raise PreprocessError(str(cause)) from e
        message = _worker_message(e)
        if message:
            raise PreprocessError(message) from e
        raise
    manifest_path = fs.join(staging, MANIFEST_NAME)
    data = json.loads(fs.read_bytes(manifest_path).decode("utf-8"))
    problems = []
    bad = _bad_rows_problem(data, config.validation.max_bad_fraction, fs.join(dataset_dir, QUARANTINE_DIR))
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
