"""The run lifecycle, shared by both writers: start a run in a staging folder, then check
the finished run (every row accounted for, the bad-row budget, drift against the
previous run) and publish it, or refuse it and leave the previous dataset as it was.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any, Optional

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig
from tfstream.pipelines.manifest import (
    FORMAT_VERSION,
    MANIFEST_NAME,
    PREVIOUS_MANIFEST_NAME,
    Manifest,
    load_manifest,
    write_manifest,
)
from tfstream.pipelines.write import drift, publish
from tfstream.pipelines.write.publish import QUARANTINE_DIR

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
    if data.get("format_version") != FORMAT_VERSION:
        _log.warning("drift: %s has manifest format %r, not %r; not compared", path, data.get("format_version"),
                     FORMAT_VERSION)
        return None
    return path, Manifest(data, path.rsplit("/", 1)[0])


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
        before_path, before_manifest = before
        findings = drift.compare_manifests(before_manifest, Manifest(data, staging), config.train.train_split,
                                           config.validation.drift)
        against = before_path
        if previous is None:  # the dataset's own manifest, which publishing keeps under another name
            against = fs.join(dataset_dir, PREVIOUS_MANIFEST_NAME)
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
    write_manifest(staging, data)
    publish.publish(staging, dataset_dir, config.split.fractions)
    fs.remove_tree(fs.join(dataset_dir, REJECTED_RUN_DIR))  # an earlier refused run's, now stale
    return load_manifest(dataset_dir)

