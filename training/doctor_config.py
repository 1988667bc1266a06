"""`tfstream doctor --config C`: a job config's reader settings, checked against its
model and, when its dataset has been written, against the manifest and the memory
planner (`pipelines.read.memory`, the same estimate and limits `tfstream train` holds
the input pipeline to).

    batch-size        reader.batch_size >= 512 for a dense model, >= 256 for an lstm
                      (without bucketing; `doctor_script`'s thresholds)
    no-prefetch       reader.prefetch: 0
    cache-in-memory   reader.cache: memory on a split that does not fit the budget (or
                      the machine's memory), or over a quarter of the machine's memory
    shuffle-buffer    a shuffle buffer that does not fit the budget (one larger than the
                      split is no finding: `read` and the planner hold it to the split)
    memory-budget     any other part of the input pipeline that does not fit

The dataset is found as `tfstream train` finds it: ``--dataset``, else ``output.dir``,
else ``runs/<name>/dataset``. Without one, the config is checked alone and a note says
so. Each finding carries the line of its key in the YAML file (or of its section, for a
key left at its default).

Example:
    >>> report = check_config(load_config("configs/flights_dense.yaml"), None, path="flights_dense.yaml")
    >>> report.findings
    ()
    >>> report.notes[0]  # doctest: +ELLIPSIS
    'no dataset given: the config is checked alone; ...'
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

import yaml

from tfstream.pipelines.config import JobConfig, load_config
from tfstream.pipelines.manifest import Manifest, ManifestError, load_manifest
from tfstream.pipelines.read.memory import (MemoryBudgetError, MiB, check_budget, estimate_input_memory,
                                            machine_memory, memory_cache_warning)
from tfstream.training.doctor import Finding, Report, sort_findings
from tfstream.training.doctor_script import BATCH_SIZE_DENSE, BATCH_SIZE_RECURRENT

# The rule each reader setting's memory falls under.
_CODES = {"reader.cache": "cache-in-memory", "reader.shuffle_buffer": "shuffle-buffer"}
_FIX = {"reader.cache": "reader.cache: none, or a file prefix (a file cache costs no memory)",
        "reader.shuffle_buffer": "lower reader.shuffle_buffer (the message says to what)"}


def key_lines(path: str) -> dict[str, int]:
    """The line of each top-level key and section key of a YAML config
    (``{"reader": 20, "reader.batch_size": 21, ...}``); empty when it cannot be read."""
    try:
        with open(path, encoding="utf-8") as f:
            root = yaml.compose(f.read(), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    out: dict[str, int] = {}
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            out[str(key.value)] = key.start_mark.line + 1
            if isinstance(value, yaml.MappingNode):
                for sub, _ in value.value:
                    out[f"{key.value}.{sub.value}"] = sub.start_mark.line + 1
    return out


def check_config(config: JobConfig, manifest: Optional[Manifest], *, path: str = "<config>",
                 lines: Optional[Mapping[str, int]] = None, machine_bytes: Optional[int] = None,
                 missing: Optional[str] = None) -> Report:
    """Check ``config``'s reader settings, with the dataset's ``manifest`` when there is one.

    Args:
        config: the job config.
        manifest: its dataset's manifest, or None: the config is checked alone.
        path: the config's file, for the findings.
        lines: each key's line in that file (`key_lines`).
        machine_bytes: the memory to plan against (default: this machine's, as
            `tfstream train` plans).
        missing: why there is no manifest (for the note).
    """
    lines = lines or {}
    reader, split = config.reader, config.train.train_split
    findings: list[Finding] = []

    def add(key: str, code: str, severity: str, what: str, why: str, fix: str) -> None:
        line = lines.get(key, lines.get(key.split(".")[0]))
        default = "" if key in lines else " (the default)"
        findings.append(Finding(path, line, code, severity, what + default, why, fix))

    rows = manifest.num_examples(split) if manifest is not None and split in manifest.splits else None
    lstm = config.model.type == "lstm"
    threshold = BATCH_SIZE_RECURRENT if lstm else BATCH_SIZE_DENSE
    if reader.batch_size >= threshold and not (lstm and reader.max_tokens_per_batch):
        whole = f" The {split!r} split holds {rows:,} records." if rows else ""
        add("reader.batch_size", "batch-size", "warning",
            f"reader.batch_size {reader.batch_size:,} is large for {'an LSTM' if lstm else 'a dense'} model",
            f"the activations the backward pass keeps grow in proportion to the batch (and to the time steps in "
            f"an LSTM); the doctor flags {BATCH_SIZE_DENSE} and more for dense models, {BATCH_SIZE_RECURRENT} for "
            f"lstm ones, a rule of thumb.{whole}",
            "start at 32 to 256" + ("; or bucket by length (reader.max_tokens_per_batch)" if lstm else ""))
    if reader.prefetch == 0:
        add("reader.prefetch", "no-prefetch", "warning", "reader.prefetch: 0 turns prefetching off",
            "each batch is read and parsed while the model waits, instead of during the previous step",
            "reader.prefetch: -1 (AUTOTUNE, the default), or a few batches")
    notes = []
    if manifest is None:
        notes.append(f"{missing or 'no dataset given'}: the config is checked alone; what the cache and the shuffle "
                     f"buffer hold could not be told")
        return Report(path, sort_findings(findings), tuple(notes))
    if split not in manifest.splits:
        notes.append(f"{manifest.root}: no split {split!r} (train.train_split); its memory could not be told")
        return Report(path, sort_findings(findings), tuple(notes))

    # The planner's own estimate and limits: what `tfstream train` would print and enforce.
    estimate = estimate_input_memory(manifest, split, reader)
    machine = machine_memory() if machine_bytes is None else machine_bytes
    flagged = set()
    try:
        warning = check_budget(estimate, reader.shuffle_buffer, machine_bytes=machine)
    except MemoryBudgetError as e:
        part = estimate.largest()
        flagged.add(part.setting)
        add(part.setting, _CODES.get(part.setting, "memory-budget"), "error",
            f"{part.setting}: tfstream train would refuse to start", str(e),
            _FIX.get(part.setting, f"lower {part.setting}, or raise reader.memory_budget_mb"))
    else:
        if warning:
            part = max(estimate.parts, key=lambda p: p.worst)
            flagged.add(part.setting)
            add(part.setting, _CODES.get(part.setting, "memory-budget"), "warning",
                f"{part.setting}: may not fit at worst", warning,
                _FIX.get(part.setting, f"lower {part.setting}"))
    if reader.cache == "memory" and "reader.cache" not in flagged:
        cache_warning = memory_cache_warning(manifest, split, machine_bytes=machine)
        if cache_warning:
            add("reader.cache", "cache-in-memory", "warning", "reader.cache: memory on a large split",
                cache_warning, _FIX["reader.cache"])
    limit = estimate.budget or machine
    notes.append(f"{manifest.root}: the input pipeline of split {split!r} needs about {estimate.expected / MiB:.1f} "
                 f"MiB, {estimate.worst / MiB:.1f} MiB at worst (the memory planner), against "
                 + (f"reader.memory_budget_mb {estimate.budget / MiB:.0f}" if estimate.budget else
                    f"this machine's {limit / MiB:.0f} MiB" if limit else "no known limit"))
    return Report(path, sort_findings(findings), tuple(notes))


def check_config_file(path: str, dataset: Optional[str] = None) -> Report:
    """Load the config at ``path`` and check it with its dataset (see the module doc).

    Args:
        path: a job config (YAML).
        dataset: the dataset directory (default: ``output.dir``, then
            ``runs/<name>/dataset``, as `tfstream train` finds it). One given that
            cannot be loaded is an error; a default one that is not there gives a note.

    Raises:
        ConfigError: the config does not load.
        ManifestError: ``dataset`` was given and holds no readable manifest.
    """
    config = load_config(path)
    directory = dataset or config.output.dir or os.path.join("runs", config.name, "dataset")
    manifest, missing = None, None
    try:
        manifest = load_manifest(directory)
    except ManifestError as e:
        if dataset is not None:
            raise
        missing = f"no dataset ({e})"
    return check_config(config, manifest, path=path, lines=key_lines(path), missing=missing)
