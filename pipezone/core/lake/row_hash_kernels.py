"""The compiled loops of `row_hash`: XXH64 as Spark's `XXH64` class computes it (org.apache.spark.sql.
catalyst.expressions.XXH64), folding one column into each row's running hash (`seeds`, updated in place).

A separate module so that importing `row_hash` does not load numba; `cache=True` keeps the compiled code
next to this file, so only the first process pays the ~2 s compilation.
"""

from __future__ import annotations

import numpy as np
from numba import njit

P1 = np.uint64(0x9E3779B185EBCA87)
P2 = np.uint64(0xC2B2AE3D27D4EB4F)
P3 = np.uint64(0x165667B19E3779F9)
P4 = np.uint64(0x85EBCA77C2B2AE63)
P5 = np.uint64(0x27D4EB2F165667C5)


@njit(inline="always")
def _rotl(x, r):  # numba-typed
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


@njit(inline="always")
def _fmix(h):
    h ^= h >> np.uint64(33)
    h *= P2
    h ^= h >> np.uint64(29)
    h *= P3
    h ^= h >> np.uint64(32)
    return h


@njit(inline="always")
def _round(acc, word):
    return _rotl(acc + word * P2, 31) * P1


@njit(inline="always")
def _word(data, o):  # little-endian 64-bit word at byte o
    w = np.uint64(0)
    for i in range(8):
        w |= np.uint64(data[o + i]) << np.uint64(8 * i)
    return w


@njit(inline="always")
def _hash_int(value, seed):  # value: the int's 32 bits, zero-extended
    h = seed + P5 + np.uint64(4)
    h ^= value * P1
    return _fmix(_rotl(h, 23) * P2 + P3)


@njit(inline="always")
def _hash_long(value, seed):
    h = seed + P5 + np.uint64(8)
    h ^= _round(np.uint64(0), value)
    return _fmix(_rotl(h, 27) * P1 + P4)


@njit(inline="always")
def _hash_bytes(data, start, end, seed):
    o = start
    if end - start >= 32:
        v1 = seed + P1 + P2
        v2 = seed + P2
        v3 = seed
        v4 = seed - P1
        while o <= end - 32:
            v1 = _round(v1, _word(data, o))
            v2 = _round(v2, _word(data, o + 8))
            v3 = _round(v3, _word(data, o + 16))
            v4 = _round(v4, _word(data, o + 24))
            o += 32
        h = _rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)
        h = (h ^ _round(np.uint64(0), v1)) * P1 + P4
        h = (h ^ _round(np.uint64(0), v2)) * P1 + P4
        h = (h ^ _round(np.uint64(0), v3)) * P1 + P4
        h = (h ^ _round(np.uint64(0), v4)) * P1 + P4
    else:
        h = seed + P5
    h += np.uint64(end - start)
    while o <= end - 8:
        h ^= _round(np.uint64(0), _word(data, o))
        h = _rotl(h, 27) * P1 + P4
        o += 8
    if o <= end - 4:
        w = np.uint64(0)
        for i in range(4):
            w |= np.uint64(data[o + i]) << np.uint64(8 * i)
        h ^= w * P1
        h = _rotl(h, 23) * P2 + P3
        o += 4
    while o < end:
        h ^= np.uint64(data[o]) * P5
        h = _rotl(h, 11) * P1
        o += 1
    return _fmix(h)


@njit(cache=True)
def fold_ints(values, valid, seeds):  # values: int32
    for i in range(seeds.shape[0]):
        if valid[i]:
            seeds[i] = _hash_int(np.uint64(np.uint32(values[i])), seeds[i])


@njit(cache=True)
def fold_longs(values, valid, seeds):  # values: int64
    for i in range(seeds.shape[0]):
        if valid[i]:
            seeds[i] = _hash_long(np.uint64(values[i]), seeds[i])


@njit(cache=True)
def fold_bytes(offsets, data, valid, seeds):  # Arrow string/binary buffers
    for i in range(seeds.shape[0]):
        if valid[i]:
            seeds[i] = _hash_bytes(data, offsets[i], offsets[i + 1], seeds[i])


@njit(cache=True)
def fold_wide_decimals(words, valid, seeds):  # words: (n, 2) int64, low word first
    """A decimal wider than 18 digits: XXH64 of its unscaled value's `BigInteger.toByteArray()`."""
    scratch = np.zeros(16, dtype=np.uint8)
    for i in range(seeds.shape[0]):
        if not valid[i]:
            continue
        low = np.uint64(words[i, 0])
        high = np.uint64(words[i, 1])
        for b in range(8):  # big-endian bytes of the 128-bit two's complement value
            scratch[b] = np.uint8((high >> np.uint64(8 * (7 - b))) & np.uint64(0xFF))
            scratch[8 + b] = np.uint8((low >> np.uint64(8 * (7 - b))) & np.uint64(0xFF))
        start = 0  # drop sign-extension bytes, keeping the one that carries the sign bit
        while start < 15 and (
            (scratch[start] == 0 and scratch[start + 1] < 0x80)
            or (scratch[start] == 0xFF and scratch[start + 1] >= 0x80)
        ):
            start += 1
        seeds[i] = _hash_bytes(scratch, start, 16, seeds[i])
