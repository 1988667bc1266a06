"""Deterministic train/eval split by a stable hash.

The hash is MD5 of the salt and the key, not Python's `hash()`, which differs between
processes: the same row lands in the same split on every run, on every worker, on every
runner.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from typing import Any, Iterable, Mapping


class Splitter:
    """Assigns a key to a split with probability equal to the split's fraction.

    Example:
        >>> s = Splitter({"train": 0.8, "eval": 0.2})
        >>> s.assign(["2013", "1", "1", "UA", "1545"]) in ("train", "eval")
        True
    """

    def __init__(self, fractions: Mapping[str, float], salt: str = "tfstream"):
        self.names = list(fractions)
        self._bounds = list(itertools.accumulate(fractions[n] for n in self.names))
        self._bounds[-1] = 1.0  # rounding must never leave a gap at the top
        self._salt = salt.encode("utf-8")

    def fraction_of(self, key: Iterable[Any]) -> float:
        """The key's position in [0, 1)."""
        text = "\x1f".join(str(k) for k in key).encode("utf-8")
        digest = hashlib.md5(self._salt + b"\x1e" + text).digest()
        return int.from_bytes(digest[:8], "big") / 2.0**64

    def assign(self, key: Iterable[Any]) -> str:
        return self.names[bisect.bisect_right(self._bounds, self.fraction_of(key))]
