"""Vocabularies of categorical features: the most frequent tokens, as a mergeable
accumulator.

tf.Transform's way: token counts are summed per ``(feature, token)`` first (a keyed
count), then `TopTokens` keeps the ``k`` most frequent per feature, so no worker holds a
table of every distinct token. `TopTokens` follows the `beam.CombineFn` protocol
(create / add / merge / extract) without importing Beam: the Beam pipeline lifts it into
a distributed combine, and `top_tokens` runs it in one process for `write_arrays`, so
both writers rank tokens the same way.

Example:
    >>> top_tokens({"c": {"a": 1, "b": 3, "z": 1}}, {"c": 2})
    [('c', {'num_unique': 3, 'vocabulary': [['b', 3], ['a', 1]]})]
"""

from __future__ import annotations

import collections
import heapq
from typing import Any, Iterator, Mapping, Optional, Sequence

from tfstream.transforms.analyzers import MAX_VOCABULARY


class TopTokens:
    """``(count, token)`` pairs of one feature → the number of distinct tokens and the
    ``k`` most frequent, most frequent first (ties: alphabetical). Memory: O(k).

    Example:
        >>> top = TopTokens(1)
        >>> acc = top.add_input(top.add_input(top.create_accumulator(), (2, "x")), (5, "y"))
        >>> top.extract_output(acc)
        {'num_unique': 2, 'vocabulary': [['y', 5]]}
    """

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self):
        return 0, []

    def add_input(self, acc, count_token):
        unique, heap = acc
        item = (count_token[0], _Reversed(count_token[1]))
        if len(heap) < self._k:
            heapq.heappush(heap, item)
        elif item > heap[0]:
            heapq.heapreplace(heap, item)
        return unique + 1, heap

    def merge_accumulators(self, accs):
        unique, merged = 0, []
        for u, heap in accs:
            unique += u
            merged.extend(heap)
        return unique, heapq.nlargest(self._k, merged)

    def extract_output(self, acc):
        unique, heap = acc
        ranked = sorted(heap, reverse=True)
        return {"num_unique": unique, "vocabulary": [[t.token, int(n)] for n, t in ranked]}


class _Reversed:
    """A token that sorts in reverse, so that among equal counts the heap keeps, and
    `TopTokens` lists first, the alphabetically smaller token."""

    __slots__ = ("token",)

    def __init__(self, token: str):
        self.token = token

    def __lt__(self, other):
        return self.token > other.token

    def __gt__(self, other):
        return self.token < other.token

    def __eq__(self, other):
        return self.token == other.token

    def __reduce__(self):
        return _Reversed, (self.token,)


def largest_k(sizes: Mapping[str, Optional[int]]) -> int:
    """The ``k`` one `TopTokens` needs for every feature (``None``: `MAX_VOCABULARY`)."""
    return max((size or MAX_VOCABULARY) for size in sizes.values()) if sizes else MAX_VOCABULARY


def token_counts(rows: Sequence[Mapping[str, Any]], names: Sequence[str]) -> Iterator[tuple[tuple[str, str], int]]:
    """A batch of rows → ``((feature, token), count)`` pairs, counted within the batch.

    Example:
        >>> sorted(token_counts([{"c": "a"}, {"c": "a"}, {"c": "b"}], ["c"]))
        [(('c', 'a'), 2), (('c', 'b'), 1)]
    """
    counts: collections.Counter = collections.Counter()
    for name in names:
        counts.update(row[name] for row in rows)
        yield from (((name, token), n) for token, n in counts.items())
        counts.clear()


def by_feature(kv: tuple[tuple[str, str], int]) -> tuple[str, tuple[int, str]]:
    """``((feature, token), count)`` → ``(feature, (count, token))``, `TopTokens`' input."""
    (name, token), n = kv
    return name, (n, token)


def trimmed(name_vocab: tuple[str, dict[str, Any]], sizes: Mapping[str, Optional[int]]):
    """A feature's ranked vocabulary cut to its own ``vocab_size``."""
    name, vocab = name_vocab
    size = sizes[name] or MAX_VOCABULARY
    return name, {**vocab, "vocabulary": vocab["vocabulary"][:size]}


def top_tokens(counts: Mapping[str, Mapping[str, int]], sizes: Mapping[str, Optional[int]]
               ) -> list[tuple[str, dict[str, Any]]]:
    """The Beam pipeline's vocabularies in one process: token counts per feature → the
    same ``(feature, {"num_unique", "vocabulary"})`` pairs, ranked by `TopTokens`."""
    top = TopTokens(largest_k(sizes))
    out = []
    for name in sorted(sizes):
        acc = top.create_accumulator()
        for token, n in counts.get(name, {}).items():
            acc = top.add_input(acc, (n, token))
        out.append(trimmed((name, top.extract_output(acc)), sizes))
    return out
