"""Spans: raw input partitioned by time (a day's or a month's files), each preprocessed
into a dataset of its own, for scheduled retraining (`tfstream.retraining`).

``source.path`` marks the span with ``{span}`` (``raw/span={span}/*.csv``). A span's
name is what ``{span}`` matched: letters, digits, ``.``, ``-`` and ``_``; spans are
ordered by name, so name them so that they sort in time (ISO dates: ``2013-03``,
``2024-06-01``). Its dataset is ``<datasets_dir>/<name>/span=<span>/``.

A span's dataset is (re)written when it has none, when one of its input files changed
(size, and SHA-256 of the bytes, recorded in the manifest's ``source.fingerprint``), or
when the config's dataset settings changed (`config_retrain.dataset_fingerprint`,
recorded as ``options.config_sha256``). Otherwise it is reused as it is, and nothing is
written. Checking a span costs one ``stat`` per input file while their sizes and
modification times match the record kept beside its dataset (``.inputs.json``); the
files are hashed only when these changed.

Example:
    >>> (tmp_path / "raw" / "span=2013-02").mkdir(parents=True)
    >>> (tmp_path / "raw" / "span=2013-01").mkdir(parents=True)
    >>> for s in ("2013-01", "2013-02"):
    ...     _ = (tmp_path / "raw" / f"span={s}" / "part-0.csv").write_text("x,y\\n1,2\\n")
    >>> [(s.name, len(s.files)) for s in find_spans(str(tmp_path / "raw" / "span={span}" / "*.csv"))]
    [('2013-01', 1), ('2013-02', 1)]
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import re
from typing import Any, Optional, Sequence

from tfstream.pipelines import fs
from tfstream.pipelines.config import JobConfig, replace
from tfstream.pipelines.config_retrain import SPAN, dataset_fingerprint, span_parts
from tfstream.pipelines.manifest import MANIFEST_NAME, ManifestError, load_manifest

_log = logging.getLogger(__name__)

SPAN_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
INPUTS_NAME = ".inputs.json"


@dataclasses.dataclass(frozen=True)
class Span:
    """One span: its name and its input files (sorted)."""

    name: str
    files: tuple[str, ...]


def _glob_regex(pattern: str) -> str:
    """A glob (``*``, ``?``, ``[...]``, no ``**``) as a regular expression of one path."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[" and "]" in pattern[i + 1:]:
            j = pattern.index("]", i + 1)
            inside = pattern[i + 1:j]
            if inside.startswith("!"):  # a glob's negated class, [!...]: a regex's [^...]
                inside = "^" + inside[1:]
            out.append("[" + inside.replace("\\", "\\\\") + "]")
            i = j
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def find_spans(path: str, *, until: Optional[str] = None) -> list[Span]:
    """The spans that ``path`` (``source.path`` with ``{span}``) matches, oldest first.

    Args:
        path: the pattern, e.g. ``raw/flights/span={span}/*.csv``.
        until: ignore spans whose name sorts after this one (a scheduler's run date, a
            backfill).

    A match whose span part is not a span name (``/`` or other characters) is skipped
    with a warning.
    """
    before, after = span_parts(path)
    regex = re.compile(_glob_regex(before) + "(?P<span>[^/]+)" + _glob_regex(after))
    by_span: dict[str, list[str]] = {}
    skipped = set()
    for match in glob.glob(before + "*" + after):
        m = regex.fullmatch(match)
        if m is None or os.path.isdir(match):
            continue
        name = m["span"]
        if re.fullmatch(SPAN_NAME, name) is None:
            skipped.add(name)
            continue
        if until is not None and name > until:
            continue
        by_span.setdefault(name, []).append(match)
    if skipped:
        _log.warning("skipped %d folder(s) whose span name is not letters, digits, '.', '-' and '_': %s",
                     len(skipped), ", ".join(sorted(skipped)[:5]))
    return [Span(name, tuple(sorted(files))) for name, files in sorted(by_span.items())]


def span_config(config: JobConfig, span: str) -> JobConfig:
    """The config that preprocesses one span: ``{span}`` replaced by its name, without
    the ``retrain:`` section."""
    return replace(config, source=replace(config.source, path=config.source.path.replace(SPAN, span)), retrain=None)


def span_dataset_dir(config: JobConfig, span: str) -> str:
    """``<retrain.datasets_dir>/<name>/span=<span>``."""
    return os.path.join(config.retrain.datasets_dir, config.name, f"span={span}")


def _stats(files: Sequence[str]) -> str:
    """SHA-256 of the input files' paths, sizes and modification times: what the record
    beside a dataset compares, without naming the writing machine's directories in it
    (``source.record_paths``)."""
    out = []
    for path in files:
        st = os.stat(path)
        out.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
    return hashlib.sha256(json.dumps(out).encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class SpanDataset:
    """A span's dataset: where it is, and whether this run wrote it (``made``: ``new``,
    ``changed input``, ``changed config``) or reused it (``made`` None)."""

    span: str
    dataset_dir: str
    made: Optional[str]
    snapshot: Optional[str]


def why_stale(config: JobConfig, span: Span) -> Optional[str]:
    """Why the span's dataset must be (re)written (``new``, ``changed input: FILE``,
    ``changed config``), or None when it is up to date. Reads nothing but the manifest,
    the record beside it and the files' ``stat``, unless sizes or times changed."""
    dataset_dir = span_dataset_dir(config, span.name)
    if not os.path.exists(os.path.join(dataset_dir, MANIFEST_NAME)):
        return "new"
    try:
        manifest = load_manifest(dataset_dir)
    except ManifestError as e:
        _log.warning("span %s: its dataset's manifest cannot be read (%s); writing it again", span.name, e)
        return "unreadable manifest"
    if manifest.data.get("options", {}).get("config_sha256") != dataset_fingerprint(span_config(config, span.name)):
        return "changed config"
    stats = _stats(span.files)
    recorded = fs.read_json_object(os.path.join(dataset_dir, INPUTS_NAME)) or {}
    if recorded.get("snapshot") == (manifest.snapshot or {}).get("id") and recorded.get("files_sha256") == stats:
        return None
    from tfstream.pipelines.write.sources import fingerprint

    now = fingerprint(list(span.files))
    then = manifest.data["source"].get("fingerprint", {})
    if now["sha256"] != then.get("sha256"):
        old = {f.get("name"): f.get("sha256") for f in then.get("files", [])}
        changed = [f["name"] for f in now["files"] if old.get(f["name"]) != f["sha256"]] or \
            sorted(set(old) - {f["name"] for f in now["files"]})
        return f"changed input: {', '.join(changed[:3]) or 'the file list'}"
    _remember_inputs(dataset_dir, manifest, stats)  # touched, not changed: stat only next time
    return None


def _remember_inputs(dataset_dir: str, manifest, stats: str) -> None:
    fs.write_json(os.path.join(dataset_dir, INPUTS_NAME),
                  {"snapshot": (manifest.snapshot or {}).get("id"), "files_sha256": stats})


def ensure_dataset(config: JobConfig, span: Span, *, wait: bool = False) -> SpanDataset:
    """The span's dataset, written first when `why_stale` says so (the staged publish
    of `preprocess`: the old snapshot stays published until the new one is)."""
    dataset_dir = span_dataset_dir(config, span.name)
    reason = why_stale(config, span)
    if reason is None:
        manifest = load_manifest(dataset_dir)
        return SpanDataset(span.name, dataset_dir, None, (manifest.snapshot or {}).get("id"))
    from tfstream.pipelines.write.beam_pipeline import preprocess

    _log.info("span %s: preprocessing %d file(s) (%s) -> %s", span.name, len(span.files), reason, dataset_dir)
    stats = _stats(span.files)  # before reading: a file changed meanwhile is seen next time
    manifest = preprocess(span_config(config, span.name), dataset_dir, wait=wait)
    _remember_inputs(dataset_dir, manifest, stats)
    return SpanDataset(span.name, dataset_dir, reason, (manifest.snapshot or {}).get("id"))


def describe(datasets: Sequence[SpanDataset]) -> list[dict[str, Any]]:
    """The run record's view of the window's datasets."""
    return [{"span": d.span, "dataset_dir": os.path.abspath(d.dataset_dir), "snapshot": d.snapshot,
             "made": d.made} for d in datasets]

