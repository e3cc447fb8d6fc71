"""The workbench's seeded generator (engine/rng.ts: xoshiro128**, seeded by splitmix32), draw for draw.

Its whole state is four uint32, the `rng` of a checkpoint's state.json, so a run can move between the workbench and
this trainer at any checkpoint and go on drawing the same numbers. Every helper the pretraining uses is here:
`next_u32`, `uniform`, `int`, `normal` and `permutation` (Fisher-Yates), each doing the same IEEE double operations
as the TypeScript (`uniform` is u32 / 2^32, `int(n)` is floor(uniform * n)).

`normal` uses log and cos, which V8 computes with its own fdlibm port and Python with the C library: they agree to
the last bit nearly always, but not provably always. The pretraining's data draws (permutations, crops, cluster
orders) use neither; `normal` only initialises weights, which a continued run loads instead.
"""
import math

import numpy as np

__all__ = ["Rng", "MASK32"]

MASK32 = 0xFFFFFFFF


def _rotl(x, k):
    return ((x << k) | (x >> (32 - k))) & MASK32


class Rng:
    """A deterministic generator; `state` (four ints) round-trips through JSON for checkpoints."""

    __slots__ = ("_s",)

    def __init__(self, seed):
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            # splitmix32 expands one seed into four words (JS: seed >>> 0, Math.imul, >>> 0)
            x = int(seed) & MASK32
            s = []
            for _ in range(4):
                x = (x + 0x9E3779B9) & MASK32
                z = x
                z = ((z ^ (z >> 16)) * 0x85EBCA6B) & MASK32
                z = ((z ^ (z >> 13)) * 0xC2B2AE35) & MASK32
                s.append((z ^ (z >> 16)) & MASK32)
        else:
            seed = list(seed)
            if len(seed) != 4:
                raise ValueError("Rng state must be four 32-bit integers")
            # JS `v >>> 0`: ToUint32 of a number (a state read from JSON holds non-negative integers)
            s = [int(v) & MASK32 for v in seed]
        if all(v == 0 for v in s):
            s[0] = 1
        self._s = s

    @property
    def state(self):
        """The generator's state, for checkpoints (a fresh list of four ints)."""
        return list(self._s)

    def next_u32(self):
        """Next unsigned 32-bit integer."""
        s = self._s
        s0, s1, s2, s3 = s
        result = (_rotl((s1 * 5) & MASK32, 7) * 9) & MASK32
        t = (s1 << 9) & MASK32
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 11)
        s[0], s[1], s[2], s[3] = s0, s1, s2, s3
        return result

    def uniform(self):
        """Uniform in [0, 1)."""
        return self.next_u32() / 4294967296.0

    def int(self, n):
        """Integer in [0, n)."""
        return math.floor(self.uniform() * n)

    def normal(self):
        """Standard normal (Box-Muller, no spare kept: the spare is not part of the saved state)."""
        u = self.uniform()
        while u <= 1e-12:
            u = self.uniform()
        v = self.uniform()
        return math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)

    def permutation(self, n):
        """A random permutation of 0..n-1 (Fisher-Yates, from the end), as an int64 numpy array."""
        p = list(range(n))
        # the loop of next_u32 inlined: an epoch's order of a large dataset is a million draws
        s0, s1, s2, s3 = self._s
        for i in range(n - 1, 0, -1):
            result = (_rotl((s1 * 5) & MASK32, 7) * 9) & MASK32
            t = (s1 << 9) & MASK32
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 11) | (s3 >> 21)) & MASK32
            j = math.floor((result / 4294967296.0) * (i + 1))
            p[i], p[j] = p[j], p[i]
        self._s = [s0, s1, s2, s3]
        return np.asarray(p, dtype=np.int64)
