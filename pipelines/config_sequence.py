"""The job config's sequence tables: ``source.sequence`` reads a long-format table (one
row per time step, CSV or Parquet) as one sequence per id.

`SequenceTableConfig` is the section; `check_sequence_features` holds the rules between
it, the source format and the sequence features, which `config.JobConfig` checks on
load. Where a sequence feature may come from:

* an npz source (sequences concatenated with ``lengths_key``, or ``(rows, steps, dim)``)
  or a tfds source;
* a Parquet list column, one row per sequence: ``list<float>`` (``dim: 1``), or
  ``list<list<float>>`` / ``list<fixed_size_list<float, dim>>``;
* a long-format table (``source.sequence``): one value column per channel, ``column``
  for ``dim: 1`` or ``columns: [x, y, z]`` for ``dim: 3``.

Example:
    >>> SequenceTableConfig(id="user", order="t")
    SequenceTableConfig(id='user', order='t')
"""

from __future__ import annotations

from typing import Sequence

from pydantic import Field, StrictStr, model_validator

from tfstream.pipelines.config_errors import check as _check, cut as _cut, show as _show
from tfstream.pipelines.config_types import Section as _Section


class SequenceTableConfig(_Section):
    """A long-format table: rows grouped by ``id`` into sequences, each sorted by
    ``order``. Grouping is per file (a zip member): an id's rows must all be in one file."""

    _key_path = "source.sequence"
    id: StrictStr = Field(description="The column naming each row's sequence; its rows become one example, and "
                                      "the hash split keys on it (default `split.key`).")
    order: StrictStr = Field(description="The column that orders a sequence's steps (numbers, or Parquet "
                                         "timestamps), ascending; two steps of one id with the same value reject "
                                         "the sequence.")

    @model_validator(mode="after")
    def _rules(self) -> SequenceTableConfig:
        _check(self.id != self.order, f"source.sequence: `id` and `order` are both {_show(self.id)}; name two "
                                      f"columns")
        return self


def check_sequence_features(source, features: Sequence, label_column: str, split=None) -> None:
    """The rules between ``source`` (format, ``sequence``) and the sequence features.

    Raises:
        ConfigError: naming the key and the fix.
    """
    sequences = [f for f in features if f.type == "sequence"]
    table = source.sequence
    for f in sequences:
        where = f"features[{_cut(f.name, 80)}]"
        if table is None:
            _check(source.format in ("npz", "parquet", None),
                   f"{where}: a sequence feature in a {source.format} source needs `source.sequence: {{id: <column>, "
                   f"order: <column>}}` (a long-format table: one row per step), or an npz or Parquet source")
            _check(not f.columns, f"{where}.columns: one column per channel is for long-format tables "
                                  f"(`source.sequence`); here a sequence is one column: use `column`")
            continue
        _check(len(f.columns) == f.dim if f.columns else f.dim == 1,
               f"{where}: in a long-format table each step's {f.dim} value(s) come from {f.dim} column(s), one per "
               f"channel: give `columns: [...]` with {f.dim} names" + ("" if f.columns else " (`column` is for "
                                                                                           "`dim: 1`)"))
    if table is None:
        return
    _check(source.format in ("csv", "parquet"),
           f"source.sequence: long-format tables are csv or parquet, not {source.format}; remove it")
    _check(bool(sequences), "source.sequence: a long-format table needs at least one feature of type sequence "
                            "(its values per step)")
    for f in features:
        read = f.columns or (f.column or f.name,)
        for key, column in (("id", table.id), ("order", table.order)):
            _check(column not in read, f"features[{_cut(f.name, 80)}]: reads {_show(column)}, which is "
                                       f"source.sequence.{key}; read another column")
    _check(label_column not in (table.id, table.order),
           f"label.column: {_show(label_column)} is source.sequence's id or order column; name the label's column")
    if split is not None:  # a sequence's order values are its steps', not one per sequence
        _check(table.order not in split.key,
               f"split.key: {_show(table.order)} is source.sequence.order, which differs from step to step; hash "
               f"the id (the default: remove split.key) or a column that is the same on every step")
        _check(split.column != table.order,
               f"split.column: {_show(table.order)} is source.sequence.order, which differs from step to step; name "
               f"a column that is the same on every step of a sequence")
