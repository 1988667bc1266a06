"""The Beam pipeline: a raw source → a tfstream dataset, on any Apache Beam runner.

    first, on the driver: each split's shard count (`shard_plan`, from the source's
        size measured by `source_size`: headers, metadata and its first rows)
    file names → reshuffle → read (chunks of rows) → validate + split (stable hash, or as
    the source gives it: per file, per column), per chunk:
        one element per split and chunk (a list of typed rows), not one per row
        rows that break a rule, and rows a rule drops → quarantine/*.jsonl, counted
        per split: full-pass statistics (a lifted CombineFn over batches of rows)
                   vocabularies of the training split (token counts per batch,
                       summed per token, then the top k per feature)
                   impute (training-split means, a side input) → encode
                   → WriteShards: keyed hash per record → shard; sorted runs
                       spilled per bundle; run file names grouped by shard;
                       each shard the merge of its runs, described
    → manifest.json, from one side input: the (kind, value) pairs of the small results
    then, on the driver: the bad-row fraction and drift against the previous run are
    checked, and the run is published (or refused, leaving the previous dataset as it was)

Rows travel in batches (a chunk's rows of one split) because Beam's cost per element
dwarfs the work per row; every step after validation handles a list of rows at a time.

This module holds only the Beam graph. What is not Beam is shared with `write_arrays`,
the single-process writer: row routing (`rows`), shard writing (`sharding`), manifest
assembly (`manifest_builder`), the run lifecycle (`run`), and the pure analyzers
(`transforms.analyzers`, `transforms.vocabulary`) that the combiners here wrap.

The pipeline runs on any Beam runner: the DirectRunner by default, or Dataflow, Flink
or Spark through the standard Beam options (``-- --runner=DataflowRunner ...``). Every
step is a module-level function or `beam.PTransform` with a unique label, and nothing
but the final manifest write depends on the driver: no driver-side loops over data.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Iterable, Mapping, Optional, Sequence

import apache_beam as beam

from tfstream.pipelines import fs, progress
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import Manifest, write_manifest
from tfstream.pipelines.shards import shard_file
from tfstream.pipelines.write import sources
from tfstream.pipelines.write.beam_options import (check_paths_for_runner, closing_dask_client, pipeline_options,
                                                   root_cause, runner_name, runs_in_this_process, worker_message)
from tfstream.pipelines.write.manifest_builder import manifest_json, manifest_settings
from tfstream.pipelines.write.record_paths import PathRecorder, path_recorder
from tfstream.pipelines.write.publish import QUARANTINE_DIR, QUARANTINE_FILE
from tfstream.pipelines.write.rows import QUARANTINED, READ, first_example, quarantine_key, route_chunk, rows_in_chunk
from tfstream.pipelines.write.run import PreprocessError, finish_run, progress_tasks, resolve_dataset_dir, writing
from tfstream.pipelines.write.shard_plan import plan_shards, shard_sizing
from tfstream.pipelines.write.sharding import (ROWS_READ, RunSpiller, encode_batch, merge_runs, record_batches,
                                              rows_written, write_shard)
from tfstream.pipelines.write.source_size import measure_source
from tfstream.pipelines.write.sources import resolve_source_paths
from tfstream.transforms.analyzers import DatasetStats
from tfstream.transforms.schema import Schema
from tfstream.transforms.split import SplitRouter
from tfstream.transforms.validation import ImputationError, RowRules, impute_row, imputation_values
from tfstream.transforms.vocabulary import TopTokens, by_feature, largest_k, token_counts, trimmed

_log = logging.getLogger(__name__)


class ReadSource(beam.PTransform):
    """Source files → chunks ``(file, first_row, {column: values})``.

    The file names are redistributed (a reshuffle of names, not of rows), so the files
    spread over the workers, and each file is read, validated, encoded and spilled in one
    fused stage: rows never cross a shuffle, which on the DirectRunner would hold them
    all in memory until the stage ends.
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
            | "RedistributeFiles" >> beam.Reshuffle()
            | "ReadChunks" >> beam.FlatMap(sources.read_chunks, source=self._source, columns=self._columns,
                                           sequence_columns=self._sequence_columns)
        )


class _ConvertChunk(beam.DoFn):
    """`route_chunk` as ``(tag, value)`` pairs: per split, one list of the chunk's typed
    rows of that split; one list of the chunk's quarantined rows' records (tag
    ``_quarantine``); and the chunk's row count (tag ``_read``). Batches, not rows.

    Pairs, selected per tag by `_ByTag`, rather than Beam's tagged outputs: Beam's
    DaskRunner (2.77) puts every tagged output of a ``ParDo`` into one bag, so each tag's
    consumers would receive the other tags' values too.
    """

    def __init__(self, rules: RowRules, router: SplitRouter, split_key: Sequence[str], arrays: bool = False,
                 recorder: Optional[PathRecorder] = None):
        self._rules = rules
        self._recorder = recorder
        self._router = router
        self._split_key = tuple(split_key)
        self._arrays = arrays

    def process(self, chunk):
        n = rows_in_chunk(chunk)
        progress.advance(ROWS_READ, n)  # counted where it runs: see `beam_options.runs_in_this_process`
        yield READ, n
        batches: dict[str, list[dict[str, Any]]] = {}
        for tag, value in route_chunk(chunk, self._rules, self._router, self._split_key, arrays=self._arrays,
                                      shown=self._recorder.file if self._recorder is not None else None):
            batches.setdefault(tag, []).append(value)
        yield from batches.items()


def _each(batch):
    return batch


def _select(tagged, tag: str):
    if tagged[0] == tag:
        yield tagged[1]


class _ByTag(beam.PTransform):
    """``(tag, value)`` pairs → ``{tag: the values of that tag}``, for the given tags."""

    def __init__(self, tags: Sequence[str]):
        super().__init__()
        self._tags = list(tags)

    def expand(self, pairs):
        return {tag: pairs | f"Select[{tag}]" >> beam.FlatMap(_select, tag=tag) for tag in self._tags}


class _Combine(beam.CombineFn):
    """A Beam `CombineFn` over a pure accumulator of tfstream's (`DatasetStats`,
    `TopTokens`: tf.Transform's style, the analyzer itself knows nothing of Beam). The
    combine is lifted: partial accumulators per bundle, merged on any worker.

    ``batches``: each element is a list of inputs (the typed rows of a chunk), given to
    the accumulator's ``add_inputs``.
    """

    def __init__(self, combiner, *, batches: bool = False):
        self._combiner = combiner
        self._add = combiner.add_inputs if batches else combiner.add_input

    def create_accumulator(self):
        return self._combiner.create_accumulator()

    def add_input(self, acc, element):
        return self._add(acc, element)

    def merge_accumulators(self, accs):
        return self._combiner.merge_accumulators(accs)

    def compact(self, acc):
        compact = getattr(self._combiner, "compact", None)
        return compact(acc) if compact is not None else acc

    def extract_output(self, acc):
        return self._combiner.extract_output(acc)


class ComputeVocabularies(beam.PTransform):
    """Batches of typed rows → ``(feature, {"num_unique", "vocabulary"})`` for each
    categorical feature: token counts per batch, summed per ``(feature, token)``, then
    the top ``k`` per feature (tf.Transform's way: no worker holds a whole table of
    distinct tokens)."""

    def __init__(self, sizes: dict[str, Optional[int]]):
        super().__init__()
        self._sizes = dict(sizes)

    def expand(self, rows):
        return (
            rows
            | "Tokens" >> beam.FlatMap(token_counts, names=sorted(self._sizes))
            | "Count" >> beam.CombinePerKey(sum)
            | "ByFeature" >> beam.Map(by_feature)
            | "Top" >> beam.CombinePerKey(_Combine(TopTokens(largest_k(self._sizes))))
            | "Trim" >> beam.Map(trimmed, sizes=self._sizes)
        )


def _impute_batch(rows: Sequence[dict[str, Any]], values, schema: Schema) -> list[dict[str, Any]]:
    return [impute_row(row, values, schema) for row in rows]


RUNS_DIR = ".runs"  # in a run's snapshot folder: sorted runs, removed before publishing


class _SpillRuns(beam.DoFn):
    """Batches of typed rows of one split → ``(shard, run file)``: each batch's records
    encoded, hashed (`sharding.record_hashes`, a batch at once, picks its shard), sorted and spilled as one
    run per shard (`sharding.RunSpiller`). Records never cross a shuffle: only run file
    names do, so a worker holds one batch of records whatever the size of the data.

    Runs are written per element, not per bundle: Beam's DaskRunner (2.77) drops what a
    DoFn outputs from ``finish_bundle``.
    """

    def __init__(self, schema: Schema, key: bytes, num_shards: int, folder: str, split: str):
        self._schema, self._key, self._n, self._folder, self._split = schema, key, num_shards, folder, split

    def process(self, rows):
        progress.advance(rows_written(self._split), len(rows))
        spiller = RunSpiller(self._folder)
        for shard, pairs in encode_batch(rows, self._schema, self._key, self._n):
            for h, record in pairs:
                yield from spiller.add(shard, h, record)
        yield from spiller.flush()


def _merge_shard(shard_runs, *, dataset_dir: str, split: str, name: str, num_shards: int,
                 compression: str) -> dict[str, Any]:
    """``(shard index, [run file or None, ...])`` → the shard file, written; its
    description (`sharding.write_shard`).

    The shard's records in ``(hash, record)`` order, a pseudo-random order fixed by
    their content, the same on every run and runner: the streaming k-way merge of its
    sorted runs (`sharding.merge_runs`). A shard that received nothing is written
    empty: every shard of the split exists. This runs on the worker, local or remote
    (`sharding.write_shard` goes through Beam's file systems).
    """
    index, runs = shard_runs
    path = fs.join(dataset_dir, *shard_file(split, name, index, num_shards, compression).split("/"))
    records = (record for _, record in merge_runs(r for r in runs if r))
    return write_shard(path, record_batches(records), compression, root=dataset_dir)


class WriteShards(beam.PTransform):
    """Batches of typed rows of one split → its sharded TFRecord files; outputs one
    ``(split, shard description)`` per shard (`sharding.describe_shard`).

    Like tensorflow-datasets, the records are shuffled at write time, so every shard is a
    random sample of the source even when the source is sorted (by date, by class), and a
    bounded shuffle buffer on the read side mixes well: a record's keyed hash
    (`sharding.record_hashes`) picks its shard, and a shard's records are sorted by hash. Shard
    contents and order are thus the same on every run and every runner.

    Memory: records never cross a shuffle. Each worker encodes and buffers records,
    spills them as sorted runs (`_SpillRuns`), and only the runs' file names are
    grouped by shard; a shard is then the streaming merge of its runs. Every shard file
    exists, even one that received no record.
    """

    def __init__(self, split: str, schema: Schema, dataset_dir: str, name: str, num_shards: int, compression: str):
        super().__init__()
        self._split, self._schema, self._dir = split, schema, dataset_dir
        self._name, self._num_shards, self._compression = name, num_shards, compression

    def expand(self, batches):
        n = self._num_shards
        runs = batches | "SpillRuns" >> beam.ParDo(
            _SpillRuns(self._schema, self._name.encode("utf-8"), n, fs.join(self._dir, RUNS_DIR, self._split),
                       self._split))
        every_shard = batches.pipeline | "ShardIndices" >> beam.Create([(i, None) for i in range(n)])
        return (
            (runs, every_shard)
            | "WithEmptyShards" >> beam.Flatten()
            | "GroupRunsByShard" >> beam.GroupByKey()
            | "MergeShard" >> beam.Map(_merge_shard, dataset_dir=self._dir, split=self._split, name=self._name,
                                       num_shards=n, compression=self._compression)
            | "Tag" >> beam.Map(_tagged, tag=self._split)
        )


def _quarantine_line(record: dict[str, Any]) -> tuple[int, int, bytes]:
    """A quarantined row → ``(shard 0, hash 0, sort key + JSON line)``: runs sorted by
    source file and row, whatever the bundles (the key is cut off when written)."""
    key = f"{record.get('file', '')}\0{int(record.get('row') or 0):012d}\0".encode("utf-8")
    return 0, 0, key + json.dumps(record, sort_keys=True).encode("utf-8")


class _SpillQuarantine(beam.DoFn):
    """A chunk's quarantined rows → one run file of their JSON lines
    (`sharding.RunSpiller`), as the shards' records are spilled: they never cross a
    shuffle either."""

    def __init__(self, folder: str):
        self._folder = folder

    def process(self, records):
        spiller = RunSpiller(self._folder)
        for record in records:
            yield from spiller.add(*_quarantine_line(record))
        yield from spiller.flush()


def _merge_quarantine(runs, *, path: str) -> str:
    """The quarantine file: the merge of its runs, one JSON line per row, sorted by
    source file and row; written (empty when no row was left out); its path."""
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path) as f:
        for _, line in merge_runs(r for r in runs[1] if r):
            f.write(line.split(b"\0", 2)[2] + b"\n")
    return path


class WriteQuarantine(beam.PTransform):
    """Batches of quarantined rows (dicts) → ``quarantine/rows-00000-of-00001.jsonl`` in
    ``dataset_dir``; outputs its path. Bounded memory: rows are spilled as sorted runs
    and merged, like the shards' records."""

    def __init__(self, dataset_dir: str):
        super().__init__()
        self._dir = dataset_dir

    def expand(self, records):
        runs = records | "SpillQuarantine" >> beam.ParDo(
            _SpillQuarantine(fs.join(self._dir, RUNS_DIR, QUARANTINE_DIR)))
        one = records.pipeline | "QuarantineFile" >> beam.Create([(0, None)])
        path = fs.join(self._dir, QUARANTINE_DIR, QUARANTINE_FILE)
        return (
            (runs, one)
            | "AllQuarantineRuns" >> beam.Flatten()
            | "GroupQuarantineRuns" >> beam.GroupByKey()
            | "MergeQuarantine" >> beam.Map(_merge_quarantine, path=path)
        )


def _tagged(value, tag):
    return tag, value


_RESULTS = ("shards", "stats", "vocabularies", "quarantined", "examples", "quarantine_files")


def _manifest_json(_, results: Iterable[tuple[str, Any]], **kwargs) -> dict[str, Any]:
    """The manifest from the run's small results, ``(kind, value)`` pairs (one of
    ``_RESULTS``, or ``rows_read``); beam.Map's element (a seed) is not used.

    One side input, not one per kind: Beam's DaskRunner (2.77) computes each side input
    as a computation of its own, so with one per kind the read and the validation ran
    once per kind (2.1x slower on the flights CSV).
    """
    by_kind: dict[str, Any] = {kind: [] for kind in _RESULTS}
    for kind, value in results:
        if kind == "rows_read":
            by_kind[kind] = value
        else:
            by_kind[kind].append(value)
    return manifest_json(**kwargs, **by_kind)


def _write(manifest: dict[str, Any], dataset_dir: str) -> str:
    return write_manifest(dataset_dir, manifest)


def _shares(config: JobConfig, fingerprint: dict[str, Any], files: Optional[Mapping[str, str]]) -> dict[str, float]:
    """Each final split's expected share of the rows (`SplitPlan.shares`; per-file given
    splits by their files' share of the source's bytes): it scales the default shard counts."""
    return config.split_plan().shares(sources.byte_shares(fingerprint) if files else None)


def build_pipeline(
    pipeline: beam.Pipeline,
    config: JobConfig,
    dataset_dir: str,
    paths: Sequence[str],
    fingerprint: dict[str, Any],
    beam_options: Optional[dict[str, Any]] = None,
    files: Optional[Mapping[str, str]] = None,
    shard_plan: Optional[dict[str, dict[str, Any]]] = None,
) -> None:
    """Add the whole preprocessing graph to ``pipeline`` (used by `preprocess` and tests).

    ``files``: with ``source.splits``, each source file's given split (path → split,
    `sources.resolve_split_files`); ``fingerprint`` then records them, and each split's
    share of the source bytes sets its default shard count.
    ``shard_plan``: each split's shard count (`shard_plan.plan_shards`), decided on the
    driver; by default planned here from ``paths``.
    """
    if shard_plan is None:
        shard_plan = plan_shards(config, lambda: measure_source(paths, config), _shares(config, fingerprint, files))
    schema = config.schema()
    rules = config.row_rules()
    plan = config.split_plan()
    names = plan.names
    train_split = config.train.train_split
    recorder = path_recorder(config.source, paths)
    chunks = pipeline | "Read" >> ReadSource(paths, config.source, config.source_columns(), config.sequence_columns())
    routed = (
        chunks
        | "Validate" >> beam.ParDo(_ConvertChunk(rules, plan.router(files), config.split_key(),
                                                 arrays=config.source.format == "npz", recorder=recorder))
        | "ByTag" >> _ByTag([READ, QUARANTINED, *names])
    )

    stats_of = {
        split: routed[split] | f"Stats[{split}]" >> beam.CombineGlobally(_Combine(DatasetStats(schema), batches=True))
        for split in names
    }
    imputed = config.imputed_features()
    if imputed:  # the training split's means, computed once, then a side input of every split's rows
        means = stats_of[train_split] | "ImputationValues" >> beam.Map(imputation_values, names=imputed)
    shard_descs, split_stats = [], []
    for split in names:
        rows = routed[split]
        if imputed:  # with the training split's means, on every split: no leak from eval
            rows = rows | f"Impute[{split}]" >> beam.Map(
                _impute_batch, values=beam.pvalue.AsSingleton(means), schema=schema)
        n = shard_plan[split]["num_shards"]
        shard_descs.append(rows | f"Write[{split}]" >> WriteShards(
            split, schema, dataset_dir, config.name, n, config.output.compression))
        split_stats.append(stats_of[split] | f"TagStats[{split}]" >> beam.Map(_tagged, tag=split))
    shards = shard_descs | "AllShards" >> beam.Flatten()
    stats = split_stats | "AllStats" >> beam.Flatten()
    sizes = config.vocabulary_sizes()
    vocabularies = (routed[train_split] | "Vocabularies" >> ComputeVocabularies(sizes) if sizes
                    else pipeline | "NoVocabularies" >> beam.Create([]))

    quarantine = routed[QUARANTINED] | "QuarantineRows" >> beam.FlatMap(_each)
    quarantined = quarantine | "QuarantineKeys" >> beam.Map(quarantine_key) \
        | "CountQuarantined" >> beam.combiners.Count.PerElement()
    examples = (
        quarantine
        | "Rejected" >> beam.Filter(lambda r: r["action"] == "rejected")
        | "ExampleKeys" >> beam.Map(first_example)
        | "FirstExample" >> beam.CombinePerKey(min)
    )
    quarantine_files = routed[QUARANTINED] | "WriteQuarantine" >> WriteQuarantine(dataset_dir)
    rows_read = routed[READ] | "CountRead" >> beam.CombineGlobally(sum)

    kinds = {"shards": shards, "stats": stats, "vocabularies": vocabularies, "quarantined": quarantined,
             "examples": examples, "quarantine_files": quarantine_files, "rows_read": rows_read}
    results = [pc | f"Result[{kind}]" >> beam.Map(_tagged, tag=kind) for kind, pc in kinds.items()] \
        | "AllResults" >> beam.Flatten()
    _ = (
        pipeline
        | "ManifestSeed" >> beam.Create([None])
        | "BuildManifest" >> beam.Map(
            _manifest_json,
            **manifest_settings(config, fingerprint, {"beam": beam_options or {}}, recorder),
            results=beam.pvalue.AsList(results),
            dataset_dir=dataset_dir,
            shard_sizing=shard_sizing(shard_plan),
        )
        | "WriteManifest" >> beam.Map(_write, dataset_dir=dataset_dir)
    )


def preprocess(
    config: JobConfig,
    output_dir: Optional[str] = None,
    *,
    beam_args: Iterable[str] = (),
    previous: Optional[str] = None,
    wait: bool = False,
    force: bool = False,
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
        wait: when another run is writing the dataset, wait for it instead of failing.
        force: write into a non-empty directory that is not a tfstream dataset, beside
            its files (which are never deleted or overwritten).

    The run writes a new snapshot and publishes it atomically (`pipelines.snapshots`):
    readers of the previous snapshot are not disturbed, and a kill at any moment leaves
    the previous dataset or the new one published.

    Raises:
        sources.SourceError: a missing column, an empty file, an unreadable file.
        PreprocessError: the pipeline failed, or the run was refused, or the output
            directory is refused (`run.check_output_dir`); the message says which rows
            or features, and what to change.
        lock.DatasetBusyError: another run is writing the dataset (without ``wait``).
    """
    dataset_dir = resolve_dataset_dir(config, output_dir)
    files = sources.resolve_split_files(config.source) if config.source.splits is not None else None
    paths = list(files) if files is not None else resolve_source_paths(config.source)
    options = pipeline_options(beam_args)  # --runner=DaskRunner resolved
    check_paths_for_runner(options, dataset_dir, paths)
    sources.check_source(paths, config.source, config.source_columns(), config.sequence_columns(),
                         rules=config.row_rules())
    fingerprint = sources.fingerprint(paths, files, path_recorder(config.source, paths))
    # Each split's shard count, from the source's size (a record's shard is its hash
    # modulo the count): here, on the driver, so every worker and every rerun agree.
    sizes = []  # the measure, when the plan takes one: the rows to read, for the progress
    plan = plan_shards(config, lambda: sizes.append(measure_source(paths, config)) or sizes[0],
                       _shares(config, fingerprint, files))
    with writing(config, dataset_dir, sources=paths, previous=previous, wait=wait, force=force) as staging:
        _log.info("preprocess %r: %d source file(s) -> %s, with Apache Beam's %s", config.name, len(paths),
                  dataset_dir, options.get_all_options()["runner"] or "DirectRunner")
        try:
            with progress.Progress("preprocess") as shown:
                if not sizes and progress.shown():  # the rows to read, for the time left (cheap: see source_size)
                    sizes.append(measure_source(paths, config))
                if runs_in_this_process(options):
                    progress_tasks(shown, plan, sizes[0].rows if sizes else None,
                                   rows_exact=bool(sizes) and sizes[0].rows_exact)
                else:
                    shown.add("runner", f"runs in the worker processes of {runner_name(options)}, which count the "
                                        f"rows (not shown here); the counts come at the end", unit="")
                with closing_dask_client(options), beam.Pipeline(options=options) as pipeline:
                    build_pipeline(pipeline, config, staging, paths, fingerprint,
                                   options.get_all_options(drop_default=True), files, shard_plan=plan)
        except Exception as e:  # noqa: BLE001 - re-raised with the cause that names the row
            cause = root_cause(e)
            if cause is not e or isinstance(cause, ImputationError):  # Beam appends the step's name
                raise PreprocessError(str(cause).split(" [while running", 1)[0]) from e
            message = worker_message(e)
            if message:
                raise PreprocessError(message) from e
            raise
        fs.remove_tree(fs.join(staging, RUNS_DIR))  # merged into the shards
        return finish_run(config, staging, dataset_dir, previous)
