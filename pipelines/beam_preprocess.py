"""The write side: an Apache Beam pipeline from a raw source to a tfstream dataset.

    read (chunks of rows) → reshuffle → validate + split (stable hash) → per split:
        encode → WriteToTFRecord (sharded) → describe shards
        full-pass statistics (a lifted CombineFn)
    → manifest.json, written last from side inputs, atomically

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

import datetime
import hashlib
import importlib.metadata
import logging
import os
from typing import Any, Iterable, Optional, Sequence

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.options.pipeline_options import PipelineOptions

from tfstream.pipelines import fs, publish, sources
from tfstream.pipelines.config import JobConfig, resolve_source_paths
from tfstream.pipelines.manifest import FORMAT_VERSION, Manifest, load_manifest, write_manifest
from tfstream.pipelines.shards import SHARD_TEMPLATE, describe_shard, shard_suffix
from tfstream.transforms.analyzers import DatasetStats
from tfstream.transforms.codecs import encode_example
from tfstream.transforms.schema import Schema
from tfstream.transforms.split import Splitter
from tfstream.transforms.validation import RowError, RowRules, convert_row

_log = logging.getLogger(__name__)

_DROPPED = "_dropped"
_READ = "_read"


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


class _ConvertChunk(beam.DoFn):
    """Validates every row of a chunk and routes it to its split (tagged output), or
    counts it as dropped; a row that breaks a rule fails the run, naming file and row."""

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
                raise RowError(e.column, e.reason, f"{name}: row {row_number}: {e}") from None
            if row is None:
                yield beam.pvalue.TaggedOutput(_DROPPED, dropped)
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

    def extract_output(self, acc):
        return self._stats.extract_output(acc)


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


def _manifest_json(_, *, name, schema_json, compression, fractions, fingerprint, options, versions,
                   shards, stats, dropped, rows_read) -> dict[str, Any]:
    splits = {}
    for split in fractions:
        split_shards = sorted((d for s, d in shards if s == split), key=lambda d: d["file"])
        split_stats = next(st for s, st in stats if s == split)
        splits[split] = {
            "fraction": fractions[split],
            "num_examples": sum(d["records"] for d in split_shards),
            "num_bytes": sum(d["bytes"] for d in split_shards),
            "num_shards": len(split_shards),
            "shards": split_shards,
            "statistics": split_stats,
        }
    written = sum(s["num_examples"] for s in splits.values())
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
            "rows_dropped": int(sum(n for _, n in dropped)),
            "dropped": {reason: int(n) for reason, n in sorted(dropped)},
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
    chunks = pipeline | "Read" >> ReadSource(paths, config.source, config.source_columns(), config.sequence_columns())
    routed = chunks | "Validate" >> beam.ParDo(
        _ConvertChunk(rules, Splitter(fractions, config.split.salt), config.split.key)
    ).with_outputs(_READ, _DROPPED, *fractions)

    shard_descs, split_stats = [], []
    for split in fractions:
        rows = routed[split]
        n = config.output.num_shards.get(split, default_num_shards(fractions[split]))
        shard_descs.append(rows | f"Write[{split}]" >> WriteSplit(
            split, schema, dataset_dir, config.name, n, config.output.compression))
        split_stats.append(
            rows
            | f"Stats[{split}]" >> beam.CombineGlobally(_StatsCombineFn(schema))
            | f"TagStats[{split}]" >> beam.Map(lambda st, s: (s, st), s=split)
        )
    shards = shard_descs | "AllShards" >> beam.Flatten()
    stats = split_stats | "AllStats" >> beam.Flatten()
    dropped = routed[_DROPPED] | "CountDropped" >> beam.combiners.Count.PerElement()
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
            dropped=side.AsList(dropped),
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


def preprocess(
    config: JobConfig,
    output_dir: Optional[str] = None,
    beam_args: Iterable[str] = (),
) -> Manifest:
    """Run the preprocessing pipeline and return the manifest it wrote.

    Args:
        config: the job config.
        output_dir: the dataset directory; defaults to ``output.dir`` of the config,
            then ``runs/<name>/dataset``.
        beam_args: Beam pipeline options, passed to `PipelineOptions` unchanged
            (``--runner=DataflowRunner --project=... --region=...``). The default
            runner is the DirectRunner.

    Raises:
        sources.SourceError: a missing column, an empty file, an unreadable file.
        PreprocessError: the pipeline failed; the message names the file and row.
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
    publish.publish(staging, dataset_dir, config.split.fractions)
    return load_manifest(dataset_dir)
