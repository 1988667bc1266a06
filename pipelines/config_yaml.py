"""Job configs' YAML, read so that no file can crash or exhaust the process.

`yaml.safe_load` builds no Python object from a tag (``!!python/...`` is refused), but
it still trusts a file's size: a 2 KB "billion laughs" file (anchors whose aliases
refer to each other, nine deep) stands for a billion values, and whatever walks the
result (pydantic, the ``repr`` in an error message) walks them all. `read_yaml` reads a
config in steps, each bounded before the next:

1. at most `MAX_CONFIG_BYTES` of UTF-8 text;
2. the node graph (PyYAML's composer; an alias is a second reference to a node, not a
   copy), nesting at most `MAX_DEPTH` deep: the composer recurses once per level, and
   20,000 levels would end in a `RecursionError`;
3. the values that graph unfolds to, counted without unfolding it (`unfolded_size`,
   linear in the nodes), at most `MAX_VALUES`;
4. the Python objects, with safe tags only; a key given twice in one mapping is refused
   (YAML would keep the last one silently), naming the key and both lines.

Each refusal is a `ConfigError` that says what to do. Anchors and aliases themselves
(and merge keys, ``<<: *base``) stay legitimate YAML: only the size they unfold to is
bounded. `check_size` bounds plain data given by a Python caller the same way.

Example:
    >>> bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\\n" + "".join(
    ...     f"{k}: &{k} [{', '.join(['*' + p] * 10)}]\\n" for p, k in zip("abcdefgh", "bcdefghi"))
    >>> try:
    ...     parse_yaml(bomb)
    ... except ConfigError as e:
    ...     print(e)  # doctest: +ELLIPSIS
    the YAML unfolds to more than 100,000 values through its aliases (*name)...
    >>> parse_yaml("reader: {batch_size: 32, batch_size: 64}")
    Traceback (most recent call last):
    ...
    tfstream.pipelines.config_errors.ConfigError: line 1: the key 'batch_size' is given twice in one mapping (first on line 1); YAML would keep only the last: remove one
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from tfstream.pipelines.config_errors import ConfigError, cut, show

# A job config is a few KB (the shipped ones: under 3 KB, under 300 values, 4 levels
# deep); each limit is over a thousand times that, and far below what hurts.
MAX_CONFIG_BYTES = 4 << 20
MAX_VALUES = 100_000
MAX_DEPTH = 100
MAX_INT_CHARS = 100  # a 64-bit integer has 19 digits (written with _ separators, 26 characters)

_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: str) -> Any:
    """The plain data of the YAML file at ``path`` (see the module doc).

    Raises:
        ConfigError: naming the file and, where there is one, the line; the fix.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML config: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config: {e.strerror or e}") from None
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: over {MAX_CONFIG_BYTES >> 20} MiB, not a job config (a config is a few KB); "
                          f"check the path")
    try:
        return parse_yaml(text)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e


def parse_yaml(text: str) -> Any:
    """The plain data of one YAML document, read safely (see the module doc).

    Raises:
        ConfigError: a refused document (too deep, too large unfolded, a key given twice).
        yaml.YAMLError: YAML that does not parse, or a value of an unknown tag.
    """
    loader = _Loader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:  # the composer recurses per level; _Loader stops it first, this is the backstop
            raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels); a job config is a few levels "
                              f"deep") from None
        if node is None:
            return None
        size, _ = unfolded_size(node, _node_children)
        if size > MAX_VALUES:
            raise ConfigError(f"the YAML unfolds to more than {MAX_VALUES:,} values through its aliases (*name), "
                              f"more than any job config holds (they hold hundreds), or an anchor refers to "
                              f"itself; write the values out, or refer to fewer anchors")
        try:
            return loader.construct_document(node)
        except RecursionError:
            raise ConfigError(f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    finally:
        loader.dispose()


def check_size(data: Any, where: str = "the config") -> None:
    """Refuse plain data (mappings, lists) that unfolds to more than `MAX_VALUES` values
    or nests deeper than `MAX_DEPTH`, as `read_yaml` refuses such a file: a Python
    caller's data is walked by validation and by error messages too.

    Raises:
        ConfigError: naming what to do.
    """
    size, depth = unfolded_size(data, _data_children)
    if size > MAX_VALUES:
        raise ConfigError(f"{where}: holds more than {MAX_VALUES:,} values (a list or mapping counted each time it "
                          f"is referred to), or refers to itself; a job config holds hundreds")
    if depth > MAX_DEPTH:
        raise ConfigError(f"{where}: nested more than {MAX_DEPTH} levels deep; a job config is a few levels deep")


def unfolded_size(root: Any, children: Callable[[Any], Iterable[Any]], limit: int = MAX_VALUES) -> tuple[int, int]:
    """``(values, depth)`` of the tree that ``root`` unfolds to when every shared child is
    copied where it is referred to, each capped at ``limit + 1``; a cycle counts as
    ``limit + 1`` values.

    Walked without recursion, and each distinct node once (its size and depth are kept
    by identity), so the work is linear in the distinct nodes however large the
    unfolded tree would be.

    Example:
        >>> leaf = [1, 2]
        >>> unfolded_size([leaf, leaf, [leaf]], _data_children)
        (11, 4)
    """
    done: dict[int, tuple[int, int]] = {}
    open_ids: set[int] = set()  # expanded, not yet done: the path from the root, for cycles
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_ids.discard(key)
            below = [done[id(c)] for c in children(node)]
            size = min(limit + 1, 1 + sum(s for s, _ in below))
            done[key] = (size, min(limit + 1, 1 + max((d for _, d in below), default=0)))
            if size > limit:
                return done[key]
            continue
        if key in done:
            continue
        if key in open_ids:
            return limit + 1, limit + 1
        open_ids.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children(node) if id(c) not in done)
    return done[id(root)]


def _node_children(node: Node) -> Iterable[Node]:
    if isinstance(node, SequenceNode):
        return node.value
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return ()


def _data_children(value: Any) -> Iterable[Any]:
    if isinstance(value, dict):
        return [x for pair in value.items() for x in pair]
    if isinstance(value, (list, tuple, set, frozenset)):
        return value
    return ()


class _Loader(yaml.SafeLoader):
    """`yaml.SafeLoader` that bounds the nesting while composing, refuses a key given
    twice in one mapping, and words a value Python cannot hold (an integer of 5,000
    digits, a date of month 13) as a YAML error with its line."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(f"line {line}: nested more than {MAX_DEPTH} levels deep; a job config is a few "
                                  f"levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        # Checked on the keys as written, before merge keys (<<: *base) are unfolded:
        # a key given both by a merge and in the mapping itself is YAML's override, not a mistake.
        node = super().compose_mapping_node(anchor)
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            try:
                key = self.yaml_constructors[key_node.tag](self, key_node)
                hash(key)
            except Exception:  # noqa: BLE001 - a key construction refuses later, with its line
                key = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if key in first:
                raise ConfigError(f"line {line}: the key {show(key)} is given twice in one mapping (first on line "
                                  f"{first[key]}); YAML would keep only the last: remove one")
            first[key] = line
        return node

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(node.value) > MAX_INT_CHARS:  # (Python itself refuses more than 4,300 digits, with a ValueError)
            raise ConstructorError(None, None, f"an integer of {len(node.value):,} characters, more than any "
                                               f"setting takes", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConstructorError(None, None, f"cannot read this {node.tag.rsplit(':', 1)[-1]} value: "
                                               f"{cut(str(e), 120)}", node.start_mark) from None



_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
