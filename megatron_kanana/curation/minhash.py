"""MinHash signatures in numpy: shingle hashing and all permutations at once.

No per-shingle Python: the text becomes a code-point array; word boundaries come
from a look-up table; each word's hash is a polynomial over its code points,
read off a prefix sum (mod 2**64, with the odd base's inverse powers making the
hash position-independent); n-gram hashes combine shifted word hashes. Korean
text (Hangul share of letters >= a threshold) uses syllable n-grams over the text
with whitespace removed, so spacing variants share every shingle.

Permutations are universal hashes h_i(x) = (a_i * x + b_i) mod (2**61 - 1) over
32-bit shingle hashes: with a_i, b_i < 2**32 the product fits 64 bits exactly.
"""
from __future__ import annotations

import numpy as np

from megatron_kanana.curation.config import DedupSection
from megatron_kanana.curation.script import SPACE_TABLE, WORD_TABLE, codepoints, hangul_letter_ratio, lookup

_MASK61 = np.uint64((1 << 61) - 1)
_SHIFT61 = np.uint64(61)
_BASE = 0x100000001B3  # odd, so invertible mod 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)
_NGRAM_BASE = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Bijective 64-bit mixer (SplitMix64's finaliser); uint64 arithmetic wraps by design."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _power_table(base: int, n: int) -> np.ndarray:
    out = np.full(n, base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)  # wraps mod 2**64


_POW = _power_table(_BASE, 1 << 16)
_IPOW = _power_table(_BASE_INV, 1 << 16)


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    global _POW, _IPOW
    if n > len(_POW):
        size = 1 << (n - 1).bit_length()
        _POW, _IPOW = _power_table(_BASE, size), _power_table(_BASE_INV, size)
    return _POW[:n], _IPOW[:n]


def _ngram_hashes(unit_hashes: np.ndarray, n: int) -> np.ndarray:
    """Hash every run of n consecutive units; fewer than n units make one shingle."""
    m = len(unit_hashes)
    if m == 0:
        return unit_hashes
    n = min(n, m)
    count = m - n + 1
    out = np.zeros(count, dtype=np.uint64)
    for k in range(n):
        out = out * _NGRAM_BASE + unit_hashes[k:k + count]
    return _splitmix64(out)


def word_shingles(cp: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of word n-grams; words are maximal runs of alphanumerics."""
    is_word = lookup(WORD_TABLE, cp)
    edges = np.diff(np.concatenate(([0], is_word.view(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if len(starts) == 0:
        return np.zeros(0, dtype=np.uint64)
    pw, ipw = _powers(len(cp) + 1)
    prefix = np.zeros(len(cp) + 1, dtype=np.uint64)
    np.cumsum((cp.astype(np.uint64) + np.uint64(1)) * pw[:len(cp)], out=prefix[1:])
    words = (prefix[ends] - prefix[starts]) * ipw[starts]
    return _ngram_hashes(_splitmix64(words), n)


def syllable_shingles(cp: np.ndarray, n: int) -> np.ndarray:
    """64-bit hashes of character n-grams over the text with whitespace removed."""
    chars = cp[~lookup(SPACE_TABLE, cp)].astype(np.uint64)
    return _ngram_hashes(_splitmix64(chars + np.uint64(1)), n)


class MinHasher:
    """Computes LSH band hashes (one uint64 per band) of normalised texts."""

    # Shingles per block: a 256 x 112 uint64 block (230 kB) stays in L2 cache, and the
    # in-place ops below make this ~4x faster than whole-matrix numpy expressions.
    BLOCK = 256

    def __init__(self, section: DedupSection):
        self.section = section
        num_perm = section.num_bands * section.rows_per_band
        rng = np.random.default_rng(section.seed)
        self._a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
        self._b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)
        self._row_weights = _power_table(int(_NGRAM_BASE), section.rows_per_band)

    def shingles(self, text: str) -> np.ndarray:
        cp = codepoints(text.lower())
        if hangul_letter_ratio(cp) >= self.section.hangul_shingle_ratio:
            return syllable_shingles(cp, self.section.hangul_char_ngram)
        hashes = word_shingles(cp, self.section.word_ngram)
        # Text without a single alphanumeric word still deserves a signature.
        return hashes if len(hashes) else syllable_shingles(cp, self.section.hangul_char_ngram)

    def signature(self, shingles: np.ndarray) -> np.ndarray:
        """min over shingles of (a*x + b) mod (2**61 - 1), for every permutation.

        The Mersenne reduction (y & p) + (y >> 61) skips its final conditional
        subtraction: that changes only residues below 8 of 2**61, and the result is
        still a fixed function of x, so signatures stay comparable.
        """
        sig = np.full(len(self._a), _MASK61, dtype=np.uint64)
        x = (shingles >> np.uint64(32))[:, None]
        buf = np.empty((self.BLOCK, len(self._a)), dtype=np.uint64)
        high = np.empty_like(buf)
        for start in range(0, len(shingles), self.BLOCK):
            xb = x[start:start + self.BLOCK]
            y, h = buf[:len(xb)], high[:len(xb)]
            np.multiply(xb, self._a, out=y)
            y += self._b  # a, b, x < 2**32: a*x + b < 2**64, no wrap
            np.right_shift(y, _SHIFT61, out=h)
            y &= _MASK61
            y += h
            np.minimum(sig, np.minimum.reduce(y, axis=0), out=sig)
        return sig

    def band_hashes(self, text: str) -> np.ndarray:
        sig = self.signature(self.shingles(text))
        rows = sig.reshape(self.section.num_bands, self.section.rows_per_band)
        return _splitmix64((rows * self._row_weights).sum(axis=1, dtype=np.uint64))


def jaccard_estimate(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    return float(np.mean(sig_a == sig_b))
