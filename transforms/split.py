"""Which split a row goes to: by a stable hash of its key, or as the source gives it.

The hash is MD5 of the salt and the key, not Python's `hash()`, which differs between
processes: the same row lands in the same split on every run, on every worker, on every
runner. `Splitter.assign_numbers` computes the same MD5 for many integer keys at once
(NumPy, one 64-byte block per key), for the array writers' row numbers.

`SplitRouter` is what the writers call per row: a hash split (`Splitter`), or splits
given by the source (a row's file, or the value of a column), one of which may be
carved into several by the hash.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np


class Splitter:
    """Assigns a key to a split with probability equal to the split's fraction.

    Example:
        >>> s = Splitter({"train": 0.8, "eval": 0.2})
        >>> s.assign(["2013", "1", "1", "UA", "1545"]) in ("train", "eval")
        True
        >>> [s.names[i] for i in s.assign_numbers(np.arange(1, 6))] == [s.assign([i]) for i in range(1, 6)]
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

    def assign_numbers(self, numbers: np.ndarray) -> np.ndarray:
        """The split of each one-integer key ``[number]``, as an index into `names`:
        ``names[assign_numbers(a)[i]] == assign([int(a[i])])`` for every ``i``.

        Vectorized (`md5_first64` of the same bytes) when the salt and the longest
        number fit one MD5 block; else row by row.
        """
        numbers = np.asarray(numbers).astype(np.int64, copy=False).reshape(-1)
        prefix = self._salt + b"\x1e"
        if numbers.size and (numbers.min() < 0 or len(prefix) + len(str(int(numbers.max()))) > _MD5_ONE_BLOCK):
            index = {s: i for i, s in enumerate(self.names)}
            return np.fromiter((index[self.assign([v])] for v in numbers.tolist()), dtype=np.int64,
                               count=numbers.size)
        out = np.empty(numbers.size, dtype=np.int64)
        for start in range(0, numbers.size, _BLOCK_ROWS):  # blocks that stay in the CPU's cache
            part = numbers[start:start + _BLOCK_ROWS]
            fractions = md5_first64(_decimal_messages(prefix, part)).astype(np.float64) / 2.0**64
            out[start:start + part.size] = np.searchsorted(np.asarray(self._bounds), fractions, side="right")
        return np.minimum(out, len(self.names) - 1)


def split_text(value: Any) -> Optional[str]:
    """A split column's value as the text that ``split.values`` maps: a string as it is,
    bytes decoded (UTF-8), a whole number without a decimal point (``2``, ``2.0`` and
    ``np.int64(2)`` all read ``"2"``), anything else as `str` gives it; None for a
    missing value (None, NaN).

    Example:
        >>> [split_text(v) for v in ("test", b"train", 2.0, np.int64(3), 0.5, None, float("nan"))]
        ['test', 'train', '2', '3', '0.5', None, None]
    """
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 and not isinstance(value, (str, bytes)):
        value = value.item()  # a NumPy scalar
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        if math.isnan(value):
            return None
        return str(int(value)) if value.is_integer() else str(value)
    return str(value)


class SplitRouter:
    """Which split a row goes to, in one of three ways:

    * by hash (``fractions``): `Splitter.assign` of the row's key;
    * given by the source file (``given`` names, and ``files``: each file's split);
    * given by a ``column``: the row's value as text (`split_text`), mapped by
      ``values`` (text → given split); a value that maps to no split gives none, and
      the writers reject the row.

    With given splits, ``carve = (split, fractions)`` hash-splits the rows of one given
    split by their key, as ``fractions`` would split every row. The final split names
    (`names`) are the given ones with the carved split replaced, in place, by its parts.

    Example:
        >>> r = SplitRouter(given=["train", "test"], column="fold",
        ...                 values={"1": "train", "2": "train", "3": "test"},
        ...                 carve=("train", {"train": 0.9, "validation": 0.1}))
        >>> r.names
        ('train', 'validation', 'test')
        >>> r.value_split(3), r.value_split("4")
        ('test', None)
        >>> r.assign("test", ["f.csv", 7]), r.assign("train", ["f.csv", 7]) in ("train", "validation")
        ('test', True)
    """

    def __init__(self, fractions: Optional[Mapping[str, float]] = None, salt: str = "tfstream", *,
                 given: Sequence[str] = (), files: Optional[Mapping[str, str]] = None, column: Optional[str] = None,
                 values: Optional[Mapping[str, str]] = None,
                 carve: Optional[tuple[str, Mapping[str, float]]] = None):
        if (fractions is None) == (not given):
            raise ValueError("SplitRouter: give either hash fractions or the given split names")
        self.salt = salt
        self.given = tuple(given)
        self.column = column
        self.values = dict(values or {})
        self.files = dict(files or {})
        self.carved = carve[0] if carve else None
        self._args = {"fractions": fractions, "salt": salt, "given": given, "column": column, "values": values,
                      "carve": carve}
        if fractions is not None:
            self.hashing: Optional[Splitter] = Splitter(fractions, salt)  # every row, by hash
            self.names = tuple(fractions)
            self._carve = None
        else:
            self.hashing = None
            self._carve = Splitter(carve[1], salt) if carve else None
            self.names = tuple(n for g in self.given for n in (carve[1] if g == self.carved else (g,)))

    def with_files(self, files: Mapping[str, str]) -> "SplitRouter":
        """The same router, with each source file's given split (path → split)."""
        return SplitRouter(**self._args, files=files)

    def file_split(self, name: str) -> Optional[str]:
        """The split given to a source file (``name``: a path, or ``path!member`` for a
        member of a zip file); None when splits are not given per file."""
        if not self.files:
            return None
        path = name
        while path not in self.files and "!" in path:
            path = path.rpartition("!")[0]
        if path not in self.files:
            raise ValueError(f"{name}: not one of the source files whose split is given (source.splits)")
        return self.files[path]

    def value_split(self, value: Any) -> Optional[str]:
        """The split that a ``column`` value gives (None: none)."""
        text = split_text(value)
        return None if text is None else self.values.get(text)

    def unknown_value(self, value: Any) -> str:
        """Why a ``column`` value gives no split, for the quarantine."""
        text = split_text(value)
        known = sorted(self.values)
        listed = ", ".join(repr(k) for k in known[:10]) + (f" and {len(known) - 10} more" if len(known) > 10 else "")
        what = "missing" if text is None else f"{text[:80]!r}{'...' if len(text) > 80 else ''}"
        return f"column {self.column!r}: {what} names no split; the split values are {listed} (split.values)"

    def assign(self, given: Optional[str], key: Iterable[Any]) -> str:
        """The row's split: ``given`` (its file's or its column's), carved by the hash of
        ``key`` when it is the carved split; with no given splits, the hash of ``key``."""
        if self.hashing is not None:
            return self.hashing.assign(key)
        if given == self.carved:
            return self._carve.assign(key)
        return given



# Keys hashed at once by `assign_numbers` (measured: 16k rows a block ran 1.4x faster
# than 64k, whose arrays leave the cache).
_BLOCK_ROWS = 16384
# The longest message that one MD5 block holds (64 bytes, less the 0x80 byte and the
# 8-byte length).
_MD5_ONE_BLOCK = 55


def _decimal_messages(prefix: bytes, numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``prefix + str(n).encode()`` for each non-negative ``n``, as rows of a zero-padded
    ``(len, 64)`` uint8 matrix, and each message's length."""
    n = numbers.size
    digits = np.ones(n, dtype=np.int64)
    power = 10
    while power <= max(int(numbers.max(initial=0)), 0):
        digits += numbers >= power
        power *= 10
    lengths = len(prefix) + digits
    out = np.zeros((n, 64), dtype=np.uint8)
    out[:, :len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    rest = numbers.copy()
    for place in range(int(digits.max(initial=1)) - 1, -1, -1):  # the last digit first
        col = len(prefix) + digits - 1 - (int(digits.max(initial=1)) - 1 - place)
        has = col >= len(prefix)
        out[np.flatnonzero(has), col[has]] = (48 + rest[has] % 10).astype(np.uint8)
        rest //= 10
    return out, lengths


_MD5_SHIFTS = np.array([7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 + [6, 10, 15, 21] * 4)
_MD5_K = np.floor(np.abs(np.sin(np.arange(1, 65))) * 2.0**32).astype(np.uint64).astype(np.uint32)


def md5_first64(messages: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The first 8 bytes of the MD5 of each message, big-endian, as uint64 (what
    ``int.from_bytes(md5(m).digest()[:8], "big")`` gives), for messages of at most 55
    bytes given as `_decimal_messages` gives them.

    Example:
        >>> m = _decimal_messages(b"salt", np.array([0, 7, 12345]))
        >>> md5_first64(m).tolist() == [int.from_bytes(hashlib.md5(b"salt" + s).digest()[:8], "big")
        ...                             for s in (b"0", b"7", b"12345")]
        True
    """
    block, lengths = messages
    block = block.copy()
    n = block.shape[0]
    block[np.arange(n), lengths] = 0x80
    block[:, 56:64] = (lengths.astype("<u8") * 8).view(np.uint8).reshape(n, 8)
    words = np.ascontiguousarray(block.view("<u4").T)  # (16, n)
    init = (np.uint32(0x67452301), np.uint32(0xEFCDAB89), np.uint32(0x98BADCFE), np.uint32(0x10325476))
    a, b, c, d = (np.full(n, v, dtype=np.uint32) for v in init)
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (d & b) | (~d & c), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        f = f + a + _MD5_K[i] + words[g]
        s = np.uint32(_MD5_SHIFTS[i])
        a, d, c = d, c, b
        b = b + ((f << s) | (f >> (np.uint32(32) - s)))
    a, b = a + init[0], b + init[1]
    return (a.byteswap().astype(np.uint64) << np.uint64(32)) | b.byteswap().astype(np.uint64)
