"""The config reference: a Markdown table of every key, made from the config models.

README.md holds the table between `START` and `END` (HTML comments), and
tests/pipelines/test_config_reference.py checks that it is current. After changing a
config model, rewrite it with::

    python -m tfstream.pipelines.config_reference --write README.md

(without ``--write``, the table is printed).

Example:
    >>> table = reference_markdown().splitlines()
    >>> table[0]
    '| section | key | type / values | default | description |'
    >>> next(row for row in table if "`batch_size`" in row).split(" | ")[:4]
    ['| `reader`', '`batch_size`', 'integer', '`256`']
"""

from __future__ import annotations

import argparse
import json
import types
from typing import Annotated, Any, Iterator, Literal, Optional, Sequence, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from tfstream.pipelines.config import JobConfig

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"

_NAMES = {int: "integer", float: "number", str: "string", bool: "true or false"}


def reference_markdown() -> str:
    """One row per key of every section (``features[]`` is one item of the list)."""
    rows = ["| section | key | type / values | default | description |", "|---|---|---|---|---|"]
    for section, key, field in _keys(JobConfig, ""):
        default = "required" if field.is_required() else f"`{json.dumps(field.default, ensure_ascii=False)}`"
        cells = (f"`{section}`" if section else "(top level)", f"`{key}`", _type_text(field.annotation), default,
                 field.description or "")
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


def reference_block() -> str:
    """The table between its markers, as README.md holds it."""
    return f"{START}\n{reference_markdown()}{END}"


def _keys(model: type[BaseModel], section: str) -> Iterator[tuple[str, str, FieldInfo]]:
    for key, field in model.model_fields.items():
        tp = _unwrap(field.annotation)
        if get_origin(tp) is tuple and _is_model(_unwrap(get_args(tp)[0])):  # a list of sections: features
            yield from _keys(_unwrap(get_args(tp)[0]), f"{key}[]")
        elif _is_model(tp):
            yield from _keys(tp, f"{section}.{key}" if section else key)
        else:
            yield section, key, field


def _unwrap(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    args = [a for a in get_args(tp) if a is not type(None)]
    if get_origin(tp) in (Union, types.UnionType) and len(args) == 1 and _is_model(_unwrap(args[0])):
        return _unwrap(args[0])  # an optional section (`model`, `split.carve`): its keys
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _type_text(tp: Any) -> str:
    tp = _unwrap(tp)
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, types.UnionType):  # None shows as the default, not as a type
        return " or ".join(_type_text(a) for a in args if a is not type(None))
    if origin is Literal:
        return ", ".join(f"`{a}`" for a in args)
    if origin is tuple:
        item = _unwrap(args[0])
        kinds = get_args(item) if get_origin(item) in (Union, types.UnionType) else (item,)
        return "list of " + " or ".join(f"{_type_text(k)}s" for k in kinds)
    if origin is dict:
        return f"mapping of {_type_text(args[0])} → {_type_text(args[1])}"
    return _NAMES[tp]


def write_reference(path: str) -> bool:
    """Rewrite the reference block of the Markdown file ``path``; True if it changed.

    Raises:
        ValueError: the file has no block between `START` and `END`.
    """
    with open(path, encoding="utf-8") as f:
        text = f.read()
    head, start, rest = text.partition(START)
    _, end, tail = rest.partition(END)
    if not (start and end):
        raise ValueError(f"{path}: no {START} ... {END} block to rewrite")
    new = head + reference_block() + tail
    if new != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
    return new != text


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Print the config reference (a Markdown table), or rewrite it in "
                                                 "a Markdown file between its markers.")
    parser.add_argument("--write", metavar="FILE", help="rewrite the reference block of FILE (e.g. README.md)")
    args = parser.parse_args(argv)
    if args.write:
        print(f"{args.write}: {'updated' if write_reference(args.write) else 'already current'}")
    else:
        print(reference_markdown(), end="")


if __name__ == "__main__":
    main()
