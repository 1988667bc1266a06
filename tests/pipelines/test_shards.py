"""The vectorized TFRecord framing and record hashing against their one-record forms."""

import io

import google_crc32c
import numpy as np
import pytest

from tfstream.pipelines.shards import crc32c_rows, frame_records, read_records, take_records, write_record
from tfstream.pipelines.write.sharding import record_hash, record_hashes


def _batch(lengths, seed=0):
    rng = np.random.default_rng(seed)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return rng.integers(0, 256, int(offsets[-1]), dtype=np.uint8), offsets


@pytest.mark.parametrize("lengths", [[69] * 500, [0, 1, 7, 8, 9, 15, 16, 17, 300, 0],
                                     list(np.random.default_rng(1).integers(0, 200, 2000)), [5], [0, 0]])
def test_frame_records_writes_what_write_record_writes(lengths):
    buffer, offsets = _batch(lengths)
    expected = io.BytesIO()
    raw = buffer.tobytes()
    for a, b in zip(offsets[:-1], offsets[1:]):
        write_record(expected, raw[a:b])
    framed = frame_records(buffer, offsets).tobytes()
    assert framed == expected.getvalue()
    assert [len(r) for r in read_records(io.BytesIO(framed))] == list(lengths)


def test_crc32c_rows_is_google_crc32c_for_every_length():
    rng = np.random.default_rng(2)
    for length in range(0, 40):
        rows = rng.integers(0, 256, (17, length), dtype=np.uint8)
        assert crc32c_rows(rows).tolist() == [google_crc32c.value(r.tobytes()) for r in rows], length


def test_record_hashes_are_record_hash_of_each_record_and_spread():
    lengths = list(np.random.default_rng(3).integers(0, 120, 3000)) + [64] * 300
    buffer, offsets = _batch(lengths, seed=4)
    raw = buffer.tobytes()
    records = [raw[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
    hashes = record_hashes(buffer, offsets, b"flights")
    assert hashes.dtype == np.uint64
    assert hashes.tolist() == [record_hash(r, b"flights") for r in records]
    # equal records, equal hashes; different records, different hashes (in this sample)
    assert len(set(hashes.tolist())) == len(set(records))
    # a different key, a different order; the shard spread is even
    assert (record_hashes(buffer, offsets, b"other") != hashes).mean() > 0.99
    counts = np.bincount((hashes % np.uint64(8)).astype(np.int64), minlength=8)
    assert counts.min() > 0.8 * len(records) / 8
    # one record, in a fixed-length batch, is hashed the same as alone
    fixed, fixed_offsets = _batch([64] * 10, seed=5)
    assert int(record_hashes(fixed, fixed_offsets, b"k")[3]) == record_hash(fixed.tobytes()[192:256], b"k")
    assert record_hash(b"", b"k") != record_hash(b"\0", b"k") != record_hash(b"\0\0", b"k")


def _reference_hash(record: bytes, key: bytes) -> int:
    """The hash as `record_hashes`'s docstring defines it, in plain Python integers."""
    import hashlib

    mask = (1 << 64) - 1

    def fmix64(h):
        h ^= h >> 33
        h = (h * 0xFF51AFD7ED558CCD) & mask
        h ^= h >> 33
        h = (h * 0xC4CEB9FE1A85EC53) & mask
        return h ^ (h >> 33)

    seed = int.from_bytes(hashlib.blake2b(key[:64], digest_size=8).digest(), "little")
    h = fmix64(seed ^ ((len(record) * 0x9E3779B97F4A7C15) & mask))
    padded = record + b"\0" * (-len(record) % 8)
    for i in range(0, len(padded), 8):
        h = fmix64(h ^ int.from_bytes(padded[i:i + 8], "little"))
    return h


def test_record_hash_is_its_definition_and_pinned():
    """Pinned: a change of hash silently moves records between shards of every dataset."""
    for record in (b"", b"abc", b"12345678", b"123456789", bytes(range(200))):
        assert record_hash(record, b"flights") == _reference_hash(record, b"flights")
    assert f"{record_hash(b'abc', b'flights'):016x}" == "d67071a6cb1cdaa8"


def test_take_records_in_any_order():
    buffer, offsets = _batch([3, 0, 5, 2])
    raw = buffer.tobytes()
    rows = np.array([2, 2, 1, 3, 0])
    got, new = take_records(buffer, offsets, rows)
    assert [got.tobytes()[a:b] for a, b in zip(new[:-1], new[1:])] == [raw[offsets[r]:offsets[r + 1]] for r in rows]
