"""The job config's ``source:`` section: where the raw rows come from, files (``format``
and ``path``, or ``splits`` given per file) or a prepared tensorflow-datasets dataset
(``tfds``), and how the dataset records their paths (``record_paths``).

Example:
    >>> SourceConfig(format="csv", path="rows.csv").record_paths
    'relative'
"""

from __future__ import annotations

import re
from typing import Literal, Optional, Union

from pydantic import Field, StrictStr, model_validator

from tfstream.pipelines.config_errors import ConfigError
from tfstream.pipelines.config_errors import check as _check, cut as _cut, show as _show
from tfstream.pipelines.config_splits import check_split_name
from tfstream.pipelines.config_sequence import SequenceTableConfig
from tfstream.pipelines.config_types import FrozenMapping as _Mapping, Items as _Items, Section as _Section
from tfstream.transforms.validation import DEFAULT_NA_VALUES


class SourceConfig(_Section):
    """Where the raw rows come from: files (``format`` and ``path``), or a prepared
    tensorflow-datasets dataset (``tfds``), read with `tfds.builder_from_directory` from
    ``<data_dir>/<name>[/<config>]/<version>``, so no builder code is needed."""

    _key_path = "source"
    format: Optional[Literal["csv", "parquet", "npz"]] = Field(
        None, description="csv (plain, .gz, .bz2 or .zip), parquet or npz; required with `path` or `splits`. "
                          "Sequences: npz (concatenated, with `lengths_key`), Parquet list columns (one row per "
                          "sequence), or a csv or parquet long-format table (one row per step: `sequence`).")
    path: Optional[StrictStr] = Field(
        None, description="A file, a glob, a remote path (`gs://…`), or `pkg:<package>/<file>` for data that ships "
                          "inside an installed package (found without importing it); required unless `splits` or "
                          "`tfds`.")
    splits: Optional[_Mapping[Union[StrictStr, _Items[StrictStr]]]] = Field(
        None, description="Instead of `path`, splits given per file: split name → a file, a glob or a list of them "
                          "(as `path`), e.g. {train: \"data/*_TRAIN.csv\", eval: \"data/*_TEST.csv\"}; each file's "
                          "rows go to its split (no hash split: see `split.carve`).")
    na_values: _Items[StrictStr] = Field(DEFAULT_NA_VALUES, description="Cell values read as missing.")
    delimiter: StrictStr = Field(",", description="csv only: the field delimiter, one character.")
    lengths_key: Optional[StrictStr] = Field(None, description="npz only: the array of sequence lengths, when "
                                                               "sequences are stored concatenated.")
    sequence: Optional[SequenceTableConfig] = Field(
        None, description="csv or parquet: a long-format table, one row per time step; its rows are grouped by "
                          "`id` into sequences, sorted by `order`.")
    tfds: Optional[StrictStr] = Field(
        None, description="Instead of `format` and `path`, a TFDS dataset prepared in `data_dir`: `name` or "
                          "`name/config`, with an optional version (`name:1.0.0` or `name/1.0.0`; default: the newest "
                          "prepared). Its columns are the dataset's top-level features.")
    data_dir: Optional[StrictStr] = Field(None, description="tfds only: where it is prepared (default: "
                                                            "`$TFDS_DATA_DIR` or `~/tensorflow_datasets`).")
    tfds_split: Optional[StrictStr] = Field(None, description="tfds only: the one split to read (default: all).")
    record_paths: Literal["relative", "absolute", "none"] = Field(
        "relative", description="How the dataset records its source files (the fingerprint, the quarantine, the "
                                "recorded config): relative to `root`, absolute, or none (the file's name only), so a "
                                "shared dataset need not carry the writing machine's directory layout.")
    root: Optional[StrictStr] = Field(
        None, description="The directory `record_paths: relative` records paths from (default: the source files' "
                          "common directory; for tfds, `data_dir`). Every source file must be under it.")

    @model_validator(mode="after")
    def _rules(self) -> SourceConfig:
        if self.tfds is not None:
            _check(self.path is None, "source: give `path` (files) or `tfds` (a prepared TFDS dataset), not both")
            _check(self.splits is None, "source.splits: a tfds source has its own splits; read one with `tfds_split`, "
                                        "or remove `splits`")
            _check(self.format is None, f"source.format: a tfds source has no format; remove `format: {self.format}`")
            _check(_TFDS_RE.fullmatch(self.tfds) is not None,
                   f"source.tfds: expected a TFDS dataset name, optionally with a config and a version "
                   f"(mnist, mnist:3.0.1, glue/cola/2.0.0); got {_show(self.tfds)}")
            _check(self.tfds_split is None or re.fullmatch(r"[\w-]+", self.tfds_split) is not None,
                   f"source.tfds_split: expected a split name such as train; got {_show(self.tfds_split)} "
                   f"(slices like train[:10%] are not supported: one worker reads whole shards)")
            _check(self.delimiter == ",", "source.delimiter: only a csv source has one; remove it")
        else:
            for key in ("data_dir", "tfds_split"):
                _check(getattr(self, key) is None,
                       f"source.{key}: only a tfds source has one; remove it, or name the dataset in `source.tfds`")
            _check(self.format is not None,
                   "source.format: missing required key (csv, parquet or npz; or `tfds: <name>` for a TFDS dataset)")
            _check(self.path is None or self.splits is None,
                   "source: give `path` (every file, split by split.fractions) or `splits` (the files of each "
                   "split), not both")
            _check(self.path is not None or self.splits is not None,
                   "source.path: missing required key (a file, a glob or pkg:<package>/<file>; "
                   "or `splits: {train: <glob>, eval: <glob>}` for splits given per file; "
                   "or `tfds: <name>` for a TFDS dataset)")
            for name, patterns in (self.splits or {}).items():
                check_split_name("source.splits", name)
                _check(bool(patterns) and all(patterns),
                       f"source.splits.{_cut(name, 80)}: expected a file, a glob or a list of them, got "
                       f"{_show(patterns if isinstance(patterns, str) else list(patterns))}")
        _check(len(self.delimiter) == 1, f"source.delimiter: expected one character, got {_show(self.delimiter)}")
        if self.format != "npz":
            _check(self.lengths_key is None, "source.lengths_key: only an npz source has one; remove it")
        return self

    def split_patterns(self) -> dict[str, tuple[str, ...]]:
        """``splits`` with every value a tuple of files or globs ({} without it)."""
        return {name: (p,) if isinstance(p, str) else tuple(p) for name, p in (self.splits or {}).items()}

    def tfds_parts(self) -> tuple[str, Optional[str], Optional[str]]:
        """``(name, config or None, version or None)`` of the ``tfds`` source.

        Example:
            >>> SourceConfig(tfds="mnist:3.0.1", data_dir="/data/tfds").tfds_parts()
            ('mnist', None, '3.0.1')
        """
        m = _TFDS_RE.fullmatch(self.tfds or "")
        if m is None:
            raise ConfigError("source.tfds: not a tfds source")
        return m["name"], m["config"], m["version"]


# A TFDS dataset: name[/config][:version or /version]; a version is three numbers.
_TFDS_RE = re.compile(r"(?P<name>[A-Za-z]\w*)(?:/(?P<config>(?!\d+\.\d+\.\d+$)[\w.-]+))?"
                      r"(?:[:/](?P<version>\d+\.\d+\.\d+))?")
