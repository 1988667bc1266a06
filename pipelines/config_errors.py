"""Config errors for people: pydantic's validation errors, worded as one line that names
the key path, what was expected, what was received (cut to ~200 characters) and, for an
unknown key, the closest valid one.

pydantic lists every error of a config in its own words; tfstream reports the first in
reading order (a section's unknown keys first, then its keys in field order, then its
rules), worded as the hand-written loader worded it before pydantic, so that messages
pinned by tests and known to users did not change. `config.py` holds the models; this
module knows nothing of them but their ``_key_path`` (where a section sits in a config).

Example:
    >>> from tfstream.pipelines.config import ReadOptions
    >>> ReadOptions(batch_size="big")
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: reader.batch_size: expected an integer, got 'big'
"""

from __future__ import annotations

import difflib
import reprlib
import types
from typing import Annotated, Any, Literal, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key path and the fix."""


def check(cond: bool, message: str) -> None:
    """Raise a `ConfigError` with ``message`` unless ``cond``."""
    if not cond:
        raise ConfigError(message)


class _ShortRepr(reprlib.Repr):
    """`reprlib.Repr` whose work is bounded as well as its output: a few items of each
    list or mapping, a few levels deep, long strings and integers cut before they are
    written out (`repr` of a YAML alias bomb would build gigabytes first; ``str`` of an
    integer of 5,000 digits raises). Subclasses of the built-in containers (a config's
    frozen mappings) are shown as their base type."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel, self.maxdict = 3, 8
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = self.maxdeque = self.maxarray = 8
        self.maxstring = self.maxlong = self.maxother = limit

    def repr1(self, x: Any, level: int) -> str:
        for kind in (dict, list, tuple, set, frozenset, str, int):
            if isinstance(x, kind) and not isinstance(x, bool):
                return getattr(self, f"repr_{kind.__name__}")(x, level)
        return super().repr1(x, level)

    def repr_str(self, x: str, level: int) -> str:
        return repr(x[:self.maxstring + 1])  # cut below, with "..."

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 3 * self.maxlong:  # more digits than a message shows (and than str() may write)
            return f"<an integer of about {int(x.bit_length() * 0.30103) + 1:,} digits>"
        return repr(x)


def show(value: Any, limit: int = 200) -> str:
    """``repr(value)``, cut to about ``limit`` characters, in bounded time and memory: a
    huge value (or a small one that refers to the same list many times) never makes a
    huge message. Every value a config error echoes goes through here.

    Example:
        >>> show("x" * 1000, limit=12), show([[1, 2]] * 100, limit=30), show(10 ** 5000)
        ("'xxxxxxxx...", '[[1, 2], [1, 2], [1, 2], [1...', '<an integer of about 5,001 digits>')
    """
    try:
        text = _ShortRepr(limit).repr(value)
    except Exception:  # noqa: BLE001 - a value whose repr fails: name its type, never fail the message
        text = f"<{type(value).__name__}>"
    return cut(text, limit)


def cut(text: str, limit: int = 200) -> str:
    """``text`` (a key or a name, echoed as it is) cut to about ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 3] + "..."



def config_error(error: ValidationError, model: type[BaseModel], data: Any) -> ConfigError:
    """pydantic lists every error in its own words; a `ConfigError` is one line: the first
    problem in reading order, worded as before pydantic."""
    first = min(error.errors(include_url=False), key=lambda e: _locate(model, e["loc"])[2])
    loc, kind, value = first["loc"], first["type"], first.get("input")
    path, tp, _ = _locate(model, loc)
    root = model._key_path
    if root == "features[]" and isinstance(data, Mapping) and isinstance(data.get("name"), str):
        # one feature, built or replaced alone: named as in a job's messages
        root = f"features[{cut(data['name'], 80)}]"
    where = _join(root, path)
    if kind in ("extra_forbidden", "invalid_key"):  # invalid_key: a key that is not a string
        key, fields = cut(str(loc[len(path)]), 80), list(tp.model_fields)
        close = difflib.get_close_matches(key, fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
        return ConfigError(f"{where + '.' if where else ''}{key}: unknown key{hint}")
    if kind == "missing":
        return ConfigError(f"{where}: missing required key")
    if kind in ("model_type", "model_attributes_type"):
        return ConfigError(f"{where or 'the config'}: expected a mapping of keys to values, got {show(value)}")
    if kind == "value_error":  # one of the sections' rules: its message names its key path
        section, message = path, str(first["ctx"]["error"])
    elif kind == "literal_error" and isinstance(value, str):  # worded as a rule: a feature by its name
        section, named = path[:-1], _join(root, path[:-1])
        if getattr(_locate(model, loc[:-1])[1], "_key_path", None) == "features[]":
            owner = data
            for part in loc[:-1]:
                owner = owner[part]
            named = f"features[{cut(str(owner.get('name')), 80)}]"
        message = f"{named}.{path[-1]}: expected {_choices(get_args(_strip(tp)), where)}; got {show(value)}"
    else:
        expected = "a finite number" if kind == "finite_number" else _type_name(tp)
        return ConfigError(f"{where}: expected {expected}, got {show(value)}")
    # a nested section's rule is prefixed with where the section is, unless it says so
    # (a feature's rule names the feature: `features[x].on_nan: ...`, not its index)
    prefix = _join(root, section)
    named = section and message.startswith(_join(root, section[:1]))
    return ConfigError(f"{prefix}: {message}" if section and not named else message)


def _locate(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[list[Any], Any, list[int]]:
    """Follow an error's ``loc`` through the annotations: the key path it names (less a
    union member's tag or an unknown key), the annotation there, and the error's rank in
    reading order (a section's unknown keys first, then its keys in field order)."""
    tp, path, rank = model, [], []
    for part in loc:
        tp = _strip(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            if part not in tp.model_fields:
                rank.append(-1)
                break
            rank.append(list(tp.model_fields).index(part))
            tp = tp.model_fields[part].annotation
        elif get_origin(tp) is tuple and isinstance(part, int):
            rank.append(part)
            tp = get_args(tp)[0]
        elif get_origin(tp) is dict:
            rank.append(0)  # pydantic lists a mapping's errors in its keys' order
            tp = get_args(tp)[1]
        else:
            break
        path.append(part)
    return path, _strip(tp), rank


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` metadata, and without ``None`` in an ``Optional``."""
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    args = [a for a in get_args(tp) if a is not type(None)]
    return _strip(args[0]) if get_origin(tp) in (Union, types.UnionType) and len(args) == 1 else tp


def _join(root: str, path: list[Any]) -> str:
    for part in path:
        text = cut(str(part), 80)  # a mapping's key is the user's: maybe huge
        root += f"[{text}]" if isinstance(part, int) else f".{text}" if root else text
    return root


_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def _type_name(tp: Any) -> str:
    tp = _strip(tp)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping of {_type_name(get_args(tp)[1])}"
    if origin is Literal:
        return "a string"
    return "a mapping" if isinstance(tp, type) and issubclass(tp, BaseModel) else _TYPE_NAMES.get(tp, str(tp))


def _choices(values: tuple[str, ...], where: str) -> str:
    if len(values) == 2 or where.endswith("drift.on_drift"):  # "a, b or c": on_drift's wording since it came
        return f"{', '.join(values[:-1])} or {values[-1]}"
    return f"one of {', '.join(values)}"

