"""Character classes as numpy look-up tables: which code points are letters, word
characters, whitespace, Hangul or Latin. Shared by MinHash shingling, language
identification and the Korean heuristics, so all three agree on what a letter is.
"""
from __future__ import annotations

import numpy as np


def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    chars = [chr(i) for i in range(0x10000)]
    word = np.fromiter((c.isalnum() for c in chars), dtype=bool, count=0x10000)
    alpha = np.fromiter((c.isalpha() for c in chars), dtype=bool, count=0x10000)
    space = np.fromiter((c.isspace() for c in chars), dtype=bool, count=0x10000)
    return word, alpha, space


# Basic Multilingual Plane only: code points above it (emoji, rare CJK) count as none.
WORD_TABLE, ALPHA_TABLE, SPACE_TABLE = _tables()


def codepoints(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)


def lookup(table: np.ndarray, cp: np.ndarray) -> np.ndarray:
    return table[np.minimum(cp, 0xFFFF)] & (cp < 0x10000)


def is_hangul(cp: np.ndarray) -> np.ndarray:
    """Syllables, conjoining jamo and compatibility jamo."""
    return (((cp >= 0xAC00) & (cp <= 0xD7A3)) | ((cp >= 0x1100) & (cp <= 0x11FF))
            | ((cp >= 0x3130) & (cp <= 0x318F)))


def is_latin(cp: np.ndarray) -> np.ndarray:
    lower = cp | 0x20
    return ((lower >= 0x61) & (lower <= 0x7A)) | ((cp >= 0xC0) & (cp <= 0x24F))


def _letter_share(cp: np.ndarray, in_script: np.ndarray) -> float:
    letters = lookup(ALPHA_TABLE, cp)
    n = int(letters.sum())
    return float((in_script & letters).sum()) / n if n else 0.0


def hangul_letter_ratio(cp: np.ndarray) -> float:
    """Share of letters that are Hangul."""
    return _letter_share(cp, is_hangul(cp))


def latin_letter_ratio(cp: np.ndarray) -> float:
    """Share of letters that are Latin."""
    return _letter_share(cp, is_latin(cp))
