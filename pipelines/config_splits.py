"""The job config's splits: a hash split of every row (``split.fractions``), or splits
given by the source, per file (``source.splits``) or per row (``split.column``), one of
which may be carved into several by the hash (``split.carve``).

`SplitConfig` is the ``split:`` section. The rules between it and ``source.splits``,
and what follows from them (`SplitPlan`: the final split names, where they come from,
each one's expected share of the rows, the router the writers call per row), are here
too: `config.JobConfig` calls `plan_splits` on load.

Example:
    >>> plan = plan_splits({"train": ("a/*_TRAIN.csv",), "test": ("a/*_TEST.csv",)},
    ...                    SplitConfig(carve={"split": "train", "into": {"train": 0.9, "validation": 0.1}}))
    >>> plan.names, plan.origin
    (('train', 'validation', 'test'), 'source.splits')
    >>> {name: round(share, 2) for name, share in plan.shares({"train": 0.75, "test": 0.25}).items()}
    {'train': 0.68, 'validation': 0.08, 'test': 0.25}
"""

from __future__ import annotations

import dataclasses
import re
from typing import Mapping, Optional, Sequence, Union

from pydantic import Field, StrictStr, model_validator

from tfstream.pipelines.config_errors import ConfigError
from tfstream.pipelines.config_errors import check as _check, cut as _cut, show as _show
from tfstream.pipelines.config_types import Float as _Float, FrozenDict, FrozenMapping as _Mapping, Items as _Items
from tfstream.pipelines.config_types import Section as _Section
from tfstream.transforms.split import SplitRouter

DEFAULT_FRACTIONS = {"train": 0.8, "eval": 0.2}


def check_split_name(key: str, name: str) -> None:
    """A split name is a folder beside ``quarantine/``, and TFDS reads ``all`` as every
    split: lower-case letters, digits and _, neither ``quarantine`` nor ``all``."""
    _check(re.fullmatch(r"[a-z][a-z0-9_]*", name) is not None,
           f"{key}: split name {_show(name)} must be lower-case letters, digits and _")
    _check(name not in ("quarantine", "all"), f"{key}: {_show(name)} is a reserved name; rename the split")


def _check_fractions(key: str, fractions: Mapping[str, float]) -> None:
    _check(len(fractions) >= 1, f"{key}: name at least one split")
    for name, frac in fractions.items():
        check_split_name(key, name)
        _check(0 < frac <= 1, f"{key}.{_cut(name, 80)}: expected a fraction in (0, 1], got {_show(frac)}")
    total = sum(fractions.values())
    _check(abs(total - 1) < 1e-6, f"{key}: the fractions add up to {total:g}, not 1")


class CarveConfig(_Section):
    """One given split, hash-split into several (e.g. a validation split carved out of a
    given training split)."""

    _key_path = "split.carve"
    split: StrictStr = Field(description="The given split whose rows are hash-split (by `split.key`).")
    into: _Mapping[_Float] = Field(
        description="Split name → fraction of that split's rows, adding up to 1, e.g. {train: 0.9, validation: "
                    "0.1}; it may keep the given split's name.")

    @model_validator(mode="after")
    def _rules(self) -> CarveConfig:
        _check_fractions("split.carve.into", self.into)
        return self


# An example of carving, for messages.
_CARVE_EXAMPLE = "split.carve: {split: train, into: {train: 0.9, validation: 0.1}}"


class SplitConfig(_Section):
    """How rows are split: by a stable hash of each row's ``key`` (``fractions``), or as
    the source gives them (``source.splits`` per file, ``column`` per row), with one
    given split optionally carved by the hash (``carve``)."""

    _key_path = "split"
    fractions: Optional[_Mapping[_Float]] = Field(
        None, description="Split name → fraction of the rows, adding up to 1 (default, when no split is given: "
                          "{train: 0.8, eval: 0.2}); names are lower-case letters, digits and _ (not quarantine or "
                          "all). Not with given splits (`source.splits`, `column`): carve one with `carve`.")
    key: _Items[StrictStr] = Field((), description="The columns hashed (empty: the file name and row number; "
                                   "for arrays, the row number alone, so an .npz and `write_arrays` split alike).")
    salt: StrictStr = Field("tfstream", description="Mixed into the hash: another salt, another split.")
    column: Optional[StrictStr] = Field(
        None, description="Splits given per row: the source column that names each row's split (its value as text; "
                          "a whole number reads without a decimal point). Needs `values`.")
    values: Optional[Union[_Items[StrictStr], _Mapping[StrictStr]]] = Field(
        None, description="With `column`: the split names the column holds ([train, test]), or its values mapped to "
                          "split names ({\"1\": train, \"2\": train, \"3\": test}). A row whose value names no split "
                          "is rejected (`unknown_split`), counted under `validation.max_bad_fraction`.")
    carve: Optional[CarveConfig] = Field(
        None, description="With given splits: hash-split one of them by `key`, e.g. {split: train, into: {train: "
                          "0.9, validation: 0.1}}; the final splits are the given ones with `split` replaced by "
                          "`into`'s.")

    @model_validator(mode="after")
    def _rules(self) -> SplitConfig:
        if self.fractions is not None:
            _check_fractions("split.fractions", self.fractions)
            _check(self.column is None,
                   f"split.fractions: the splits are given by split.column; remove split.fractions (to hash-split "
                   f"one given split, write {_CARVE_EXAMPLE})")
        if self.column is None:
            _check(self.values is None, "split.values: maps the values of split.column, which is not set; set "
                                        "split.column, or remove split.values")
        else:
            _check(self.values is not None,
                   "split.values: missing; with split.column, list the splits the column holds (values: [train, "
                   "test]) or map its values to splits (values: {\"1\": train, \"2\": test})")
            _check(len(self.values) >= 1, "split.values: name at least one split")
            for name in self.value_map().values():
                check_split_name("split.values", name)
        return self

    def value_map(self) -> dict[str, str]:
        """``column``'s values (as text) → split name; {} without ``column``."""
        if isinstance(self.values, Mapping):
            return dict(self.values)
        return {name: name for name in self.values or ()}


@dataclasses.dataclass(frozen=True)
class SplitPlan:
    """What a job's split settings come to.

    Attributes:
        names: the final split names, in order.
        origin: the settings that name them, for messages (``split.fractions``,
            ``source.splits`` or ``split.values``).
        given: the given split names, in order (empty for a hash split).
        fractions: the hash split's fractions (None with given splits).
        carve: ``(given split, {name: fraction})``, or None.
        column, values, salt: as in `SplitConfig` (``values`` as a mapping).
    """

    names: tuple[str, ...]
    origin: str
    given: tuple[str, ...]
    fractions: Optional[Mapping[str, float]]
    carve: Optional[tuple[str, Mapping[str, float]]]
    column: Optional[str]
    values: Mapping[str, str]
    salt: str

    def shares(self, given_shares: Optional[Mapping[str, float]] = None) -> dict[str, float]:
        """Each final split's expected share of the rows (it sizes the default shard
        counts): a hash split's fraction; a given split's share in ``given_shares``
        (per file: its files' share of the source bytes), else an equal share of the
        given splits; a carved part, its carve fraction of its given split's share."""
        if self.fractions is not None:
            return dict(self.fractions)
        out = {}
        for g in self.given:
            share = (given_shares or {}).get(g, 1 / len(self.given) if given_shares is None else 0.0)
            if self.carve and g == self.carve[0]:
                out.update({name: share * f for name, f in self.carve[1].items()})
            else:
                out[g] = share
        return out

    def nominal_fraction(self, name: str) -> Optional[float]:
        """The fraction the config gives a split (the manifest records it): its hash
        fraction, its carve fraction (of its given split), None for a given split."""
        if self.fractions is not None:
            return self.fractions[name]
        return self.carve[1][name] if self.carve and name in self.carve[1] else None

    def given_split(self, name: str) -> Optional[str]:
        """The given split a final split comes from (itself, or the one it was carved
        out of); None for a hash split."""
        if not self.given:
            return None
        return self.carve[0] if self.carve and name in self.carve[1] else name

    def unused(self, split: SplitConfig) -> list[str]:
        """Warnings for ``split:`` settings this plan does not use: the hash's ``key``
        and ``salt`` when the splits are given and none is carved.

        Example:
            >>> by_column = SplitConfig(column="f", values=["a"], key=["id"])
            >>> plan_splits(None, by_column).unused(by_column)
            ['split.key is not used: the splits are given (split.values) and none is carved (split.carve); remove it']
        """
        if self.fractions is not None or self.carve is not None:
            return []
        fields = SplitConfig.model_fields
        return [f"split.{k} is not used: the splits are given ({self.origin}) and none is carved (split.carve); "
                f"remove it" for k in ("key", "salt") if getattr(split, k) != fields[k].default]

    def router(self, files: Optional[Mapping[str, str]] = None) -> SplitRouter:
        """The `SplitRouter` the writers call per row; ``files``: each source file's
        given split (path → split), for splits given per file."""
        if self.fractions is not None:
            return SplitRouter(self.fractions, self.salt)
        return SplitRouter(salt=self.salt, given=self.given, files=files, column=self.column,
                           values=self.values or None, carve=self.carve)


def plan_splits(source_splits: Optional[Mapping[str, Sequence[str]]], split: SplitConfig) -> SplitPlan:
    """The rules between ``source.splits`` and the ``split:`` section, and their plan.

    Raises:
        ConfigError: an impossible combination, saying what to write instead.
    """
    carve = split.carve
    if source_splits is not None:
        _check(split.column is None, "split.column: the splits are already given per file by source.splits; give "
                                     "them by one of the two (remove split.column and split.values, or source.splits)")
        _check(split.fractions is None,
               f"split.fractions: the splits are given per file by source.splits; remove split.fractions (to "
               f"hash-split one given split, write {_CARVE_EXAMPLE})")
        given, origin = tuple(source_splits), "source.splits"
    elif split.column is not None:
        given, origin = tuple(dict.fromkeys(split.value_map().values())), "split.values"
    else:
        if carve is not None:
            raise ConfigError(
                f"split.carve: carves a given split, but no split is given (source.splits or split.column); to "
                f"hash-split every row, write split.fractions: {_show(dict(carve.into))} instead")
        fractions = split.fractions if split.fractions is not None else FrozenDict(DEFAULT_FRACTIONS)
        return SplitPlan(tuple(fractions), "split.fractions", (), fractions, None, None, {}, split.salt)
    if carve is not None:
        _check(carve.split in given, f"split.carve.split: {_show(carve.split)} is not a given split; the given "
                                     f"splits are {_show(list(given))} ({origin})")
        clash = [n for n in carve.into if n in given and n != carve.split]
        _check(not clash, f"split.carve.into: {_show(clash)} {'is' if len(clash) == 1 else 'are'} also given "
                          f"({origin}); give the carved splits other names")
    names = tuple(n for g in given for n in (carve.into if carve and g == carve.split else (g,)))
    return SplitPlan(names, origin, given, None, (carve.split, dict(carve.into)) if carve else None, split.column,
                     split.value_map(), split.salt)
