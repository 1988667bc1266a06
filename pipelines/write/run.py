"""The run lifecycle, shared by both writers: check the output directory, take the
writer lock, start a run in a new snapshot folder (`writing`), then check the finished
run (every row accounted for, the bad-row budget, drift against the previous run) and
publish it, or refuse it and leave the previous dataset as it was (`finish_run`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
from typing import Any, Iterator, Optional, Sequence

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import (
    MANIFEST_NAME,
    READABLE_VERSIONS,
    Manifest,
    ManifestError,
    load_manifest,
    write_manifest,
)
from tfstream.pipelines.progress import Progress
from tfstream.pipelines.snapshots import LOCK_NAME, SNAPSHOTS_DIR, new_snapshot_id, snapshot_dir
from tfstream.pipelines.write import drift, publish
from tfstream.pipelines.write.lock import locked
from tfstream.pipelines.write.publish import QUARANTINE_DIR
from tfstream.pipelines.write.sharding import ROWS_READ, SHARDS_DONE, rows_written
from tfstream.pipelines.write.tfds_metadata import DATASET_INFO_NAME, FEATURES_NAME

_log = logging.getLogger(__name__)

REJECTED_RUN_DIR = "rejected-run"


class PreprocessError(RuntimeError):
    """The pipeline failed; the message is the cause, naming the file and row."""


def _previous_manifest(path: str) -> Optional[tuple[str, Manifest]]:
    """The manifest a run is compared with, and its path: ``path`` is a manifest file or
    a dataset directory; None when there is none (a first run)."""
    if not path.endswith(".json"):
        path = fs.join(path, MANIFEST_NAME)
    if not fs.exists(path):
        return None
    try:
        data = json.loads(fs.read_bytes(path).decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        _log.warning("drift: %s is not valid JSON (%s); not compared", path, e)
        return None
    if not isinstance(data, dict):
        _log.warning("drift: %s is not a manifest; not compared", path)
        return None
    if data.get("format_version") not in READABLE_VERSIONS[1:]:  # format 1 lacks what drift compares
        _log.warning("drift: %s has manifest format %r, not one of %s; not compared", path,
                     data.get("format_version"), READABLE_VERSIONS[1:])
        return None
    try:
        return path, Manifest(data, path.rsplit("/", 1)[0])
    except ManifestError as e:
        _log.warning("drift: %s is not a manifest this tfstream reads (%s); not compared", path, e)
        return None


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


def progress_tasks(progress: Progress, plan: dict[str, dict[str, Any]], rows: Optional[int], *,
                   rows_exact: bool = True) -> None:
    """The counters of a preprocessing run's progress: rows read (of ``rows``, the
    source's rows when known: `source_size`), rows written per split (of the shard
    plan's estimate, when it made one), and shards written (of the plan's count)."""
    progress.add(ROWS_READ, "rows read", total=rows, estimated=not rows_exact)
    for split, entry in plan.items():
        progress.add(rows_written(split), f"rows written[{split}]", total=entry.get("estimated_rows"), estimated=True)
    progress.add(SHARDS_DONE, "shards written", total=sum(p["num_shards"] for p in plan.values()), unit="shards")


def resolve_dataset_dir(config: JobConfig, output_dir: Optional[str]) -> str:
    """The dataset directory of a run: ``output_dir``, else the config's ``output.dir``,
    else ``runs/<name>/dataset``; local paths made absolute."""
    dataset_dir = output_dir or config.output.dir or os.path.join("runs", config.name, "dataset")
    return dataset_dir if fs.is_remote(dataset_dir) else os.path.abspath(dataset_dir)


# What tfstream itself leaves in a dataset directory besides a manifest and snapshots:
# a directory holding only these is still "empty" for `check_output_dir`.
_OWN_NAME = re.compile(rf"{re.escape(LOCK_NAME)}|\.(staging|previous)-[0-9a-f]{{12}}|manifest\.previous\.json")


def is_dataset_dir(path: str) -> bool:
    """Whether a local directory is a tfstream dataset: its manifest.json is one this
    tfstream reads, or a run has worked in it (its lock file and snapshots/ folder). A
    foreign manifest.json (a browser extension's, another tool's) does not count."""
    if os.path.isdir(os.path.join(path, SNAPSHOTS_DIR)) and os.path.isfile(os.path.join(path, LOCK_NAME)):
        return True
    return publish.published(path)[1] is not None


def check_output_dir(dataset_dir: str, sources: Sequence[str] = (), *, force: bool = False,
                     label: Optional[str] = None) -> None:
    """Refuse a dataset directory that a run must not write into (before anything is
    written): the filesystem root, the home directory, a directory that holds the source
    files, and a non-empty directory that is not a tfstream dataset (no manifest.json,
    no snapshots/) unless ``force``. Even with ``force``, tfstream writes only its own
    names beside the user's files and refuses when one of them is taken.

    Raises:
        PreprocessError: the message says why, and what to do.
    """
    if fs.is_remote(dataset_dir):
        return
    real = os.path.realpath(dataset_dir)
    if os.path.dirname(real) == real:
        raise PreprocessError(f"output {dataset_dir!r} is the filesystem root; write the dataset into a "
                              f"directory of its own (--output DIR, or output.dir)")
    if real == os.path.realpath(os.path.expanduser("~")):
        raise PreprocessError(f"output {dataset_dir!r} is your home directory; write the dataset into a "
                              f"directory of its own, such as {os.path.join(dataset_dir, 'datasets', 'NAME')!r}")
    for source in sources:
        if not fs.is_remote(source) and os.path.realpath(source).startswith(real + os.sep):
            raise PreprocessError(f"output {dataset_dir!r} contains the source file {source!r}; write the dataset "
                                  f"into a directory of its own, outside the source data")
    if not os.path.isdir(real):
        if os.path.exists(real):
            raise PreprocessError(f"output {dataset_dir!r} is a file, not a directory")
        return
    if is_dataset_dir(real):
        return  # runs add snapshots and never touch other files
    foreign = sorted(n for n in os.listdir(real) if not _OWN_NAME.fullmatch(n))
    if not foreign:
        return
    if not force:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise PreprocessError(
            f"output {dataset_dir!r} is not empty and is not a tfstream dataset (no {MANIFEST_NAME}, no "
            f"{SNAPSHOTS_DIR}/): it holds {shown}. Write the dataset into a new or empty directory, or pass "
            f"--force (force=True) to write beside these files; tfstream never deletes or overwrites a file it "
            f"did not write")
    ours = {MANIFEST_NAME, SNAPSHOTS_DIR, REJECTED_RUN_DIR, DATASET_INFO_NAME, FEATURES_NAME,
            *([f"{label}.labels.txt"] if label else [])}
    taken = sorted(set(foreign) & ours)
    if taken:
        raise PreprocessError(f"output {dataset_dir!r}: {', '.join(taken)} exist(s), and tfstream would write files "
                              f"of that name (the manifest, snapshots, a refused run, tensorflow-datasets metadata); "
                              f"move them, or choose another directory")


@contextlib.contextmanager
def writing(config: JobConfig, dataset_dir: str, *, sources: Sequence[str] = (), previous: Optional[str] = None,
            wait: bool = False, force: bool = False) -> Iterator[str]:
    """The life of one run in ``dataset_dir``: check the directory, take the writer lock
    (`lock.locked`), adopt a format-2 dataset, collect garbage, and yield the new
    snapshot folder to write into; on an error remove that folder. The ``with`` block
    ends with `finish_run`; the lock is held until it has published and collected
    garbage again. The previous dataset stays readable throughout, and a failed or
    killed run leaves it as it was.

    Raises:
        FileNotFoundError: ``previous`` (the manifest to compare with) was given but
            holds no manifest this version reads: checked before the run, not after.
        PreprocessError: a directory `check_output_dir` refuses.
        lock.DatasetBusyError: another run is writing the dataset (without ``wait``).
    """
    if previous is not None and _previous_manifest(previous) is None:
        raise FileNotFoundError(f"previous manifest {previous!r}: none there that this tfstream reads; give a "
                                f"manifest.json or a dataset directory written by `tfstream preprocess`")
    check_output_dir(dataset_dir, sources, force=force, label=config.label.name)
    for warning in config.split_plan().unused(config.split):
        _log.warning("%s", warning)
    with locked(dataset_dir, wait=wait):
        fs.makedirs(dataset_dir)
        publish.adopt_legacy(dataset_dir)
        _collect_garbage(config, dataset_dir)
        snapshot_id = new_snapshot_id()
        staging = snapshot_dir(dataset_dir, snapshot_id)
        fs.makedirs(staging)
        try:
            yield staging
        except BaseException:
            # Unless the run got as far as publishing it (an error, or Ctrl-C, after the
            # manifest's replace): then it is the dataset, and its files stay.
            if publish.current_id(dataset_dir)[1] != snapshot_id:
                fs.remove_tree(staging)
            raise
        _collect_garbage(config, dataset_dir)


def _collect_garbage(config: JobConfig, dataset_dir: str) -> None:
    try:
        report = publish.collect_garbage(dataset_dir, config.output.snapshot_retention_hours)
    except OSError as e:  # the dataset is fine; only old files stay a while longer
        _log.warning("%s: removing old snapshots failed (%s); they are removed by a later run", dataset_dir, e)
        return
    if report.removed:
        _log.info("removed %d old snapshot(s): %s", len(report.removed), ", ".join(report.removed))


def unlearnable_classes(config: JobConfig, data: dict[str, Any]) -> list[str]:
    """A warning for each class of the label with no row in the training split: the
    model cannot learn it, and scores on the splits that hold it mean little.

    Example:
        >>> job = load_config("configs/digits_lstm.yaml")
        >>> stats = lambda counts: {"statistics": {"label": {"class_counts": counts}}}
        >>> data = {"splits": {"train": stats({"0": 9, "1": 5}), "eval": stats({"0": 1, "7": 2})}}
        >>> warnings = unlearnable_classes(job, data)
        >>> len(warnings), warnings[0]
        (8, "label 'digit': class '2' (index 2) has no row in the training split 'train'; the model cannot learn it: check the source, the class list, or split.fractions")
        >>> warnings[5]  # doctest: +ELLIPSIS
        "label 'digit': class '7' (index 7) has no row in the training split 'train' but 2 in 'eval'; ..."
        >>> flights = load_config("configs/flights_dense.yaml")  # counts keyed by class name
        >>> unlearnable_classes(flights, {"splits": {"train": stats({"arr_delay<=15": 9, "arr_delay>15": 3})}})
        []
    """
    label = config.schema().label
    train = data["splits"].get(config.train.train_split, {}).get("statistics", {}).get("label", {})
    counts = train.get("class_counts")
    if label.task == "regression" or counts is None:
        return []
    out = []
    def count(split_counts: dict[str, Any], index: int, name: str) -> int:
        return split_counts.get(name) or split_counts.get(str(index)) or 0  # keyed by class name

    for index, name in enumerate(label.classes):
        if count(counts, index, name):
            continue
        elsewhere = ", ".join(f"{n:,} in {split!r}" for split, info in data["splits"].items()
                              if (n := count(info.get("statistics", {}).get("label", {}).get("class_counts", {}),
                                             index, name)))
        out.append(f"label {label.name!r}: class {name!r} (index {index}) has no row in the training split "
                   f"{config.train.train_split!r}{f' but {elsewhere}' if elsewhere else ''}; the model cannot learn "
                   f"it: check the source, the class list, or {config.split_plan().origin}")
    return out


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
        before_path, before_manifest = before
        findings = drift.compare_manifests(before_manifest, Manifest(data, staging), config.train.train_split,
                                           config.validation.drift)
        against = before_path
        parent = publish.current_id(dataset_dir)[1]
        if previous is None and parent is not None:  # the dataset's own manifest: its snapshot keeps a copy
            against = fs.join(snapshot_dir(dataset_dir, parent), MANIFEST_NAME)
        data["drift"] = {"against": against, "created_at": before_manifest.created_at,
                         "findings": [dataclasses.asdict(f) for f in findings]}
        for line in drift.format_findings([f for f in findings if f.severity == "warning"]):
            _log.warning("drift: %s", line)
        errors = drift.format_findings([f for f in findings if f.severity == "error"])
        if errors:
            problems.append(f"the statistics drifted from {before_path} (validation.drift.on_drift: error): "
                            + "; ".join(errors))
    if problems:
        raise _refuse(staging, dataset_dir, data, "; and ".join(problems))
    for line in unlearnable_classes(config, data):
        _log.warning("%s", line)
    write_manifest(staging, data)
    _, parent = publish.current_id(dataset_dir)
    publish.publish(staging, dataset_dir, os.path.basename(staging.rstrip("/")), parent)
    fs.remove_tree(fs.join(dataset_dir, REJECTED_RUN_DIR))  # an earlier refused run's, now stale
    return load_manifest(dataset_dir)

