"""Stage 4: heuristic quality filters, one threshold set per language.

Gopher quality and repetition rules (Rae et al. 2021), FineWeb's line rules
(Penedo et al. 2024) and a Korean Hangul-share rule. Words are whitespace tokens
holding at least one non-punctuation character; for Korean those are eojeol
(a stem with its particles attached), which is why Korean stop words may match
as suffixes (`stop_word_match: suffix`). The first failing rule rejects the
document and names itself in the statistics; a threshold of None disables a rule.
"""
from __future__ import annotations

import re

import numpy as np

from megatron_kanana.curation.config import HeuristicsSection
from megatron_kanana.curation.script import codepoints, hangul_letter_ratio

BULLETS = ("•", "●", "‣", "▪", "◦", "·", "-", "*", "–", "○", "■", "□", "▶", "►", "✓", "※")
ELLIPSES = ("...", "…")


_HAS_WORD_CHAR = re.compile(r"\w")
_HAS_LETTER = re.compile(r"[^\W\d_]")


def words_of(text: str) -> list[str]:
    """Whitespace tokens with at least one letter, digit or underscore (not bare punctuation)."""
    return [t for t in text.split() if _HAS_WORD_CHAR.search(t)]


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(number of items repeating an earlier one, characters in those repeats)."""
    seen, count, chars = set(), 0, 0
    for item in items:
        if item in seen:
            count += 1
            chars += len(item)
        else:
            seen.add(item)
    return count, chars


class _NGrams:
    """Word n-gram hashes in numpy, so the six Gopher n-gram rules cost little each."""

    def __init__(self, words: list[str]):
        vocab: dict[str, int] = {}
        self.ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), np.uint64, len(words))
        self.lengths = np.fromiter((len(w) for w in words), np.int64, len(words))
        self.total_chars = max(int(self.lengths.sum()), 1)

    def hashes(self, n: int) -> np.ndarray:
        count = len(self.ids) - n + 1
        out = np.zeros(max(count, 0), dtype=np.uint64)
        for k in range(n):  # polynomial hash mod 2**64 of n word ids
            out = out * np.uint64(0x100000001B3) + self.ids[k:k + count] + np.uint64(1)
        return out

    def top_char_frac(self, n: int) -> float:
        """Characters of the most frequent n-gram times its count, over all word characters."""
        h = self.hashes(n)
        if len(h) == 0:
            return 0.0
        uniq, first, counts = np.unique(h, return_index=True, return_counts=True)
        top = int(np.argmax(counts))
        if counts[top] < 2:
            return 0.0
        start = int(first[top])
        return int(self.lengths[start:start + n].sum()) * int(counts[top]) / self.total_chars

    def dup_char_frac(self, n: int) -> float:
        """Share of word characters inside an n-gram that occurred earlier in the text."""
        h = self.hashes(n)
        if len(h) == 0:
            return 0.0
        _, first = np.unique(h, return_index=True)
        repeat = np.ones(len(h), dtype=bool)
        repeat[first] = False
        starts = np.flatnonzero(repeat)
        cover = np.zeros(len(self.ids) + 1, dtype=np.int64)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + n, -1)
        covered = np.cumsum(cover[:-1]) > 0
        return int(self.lengths[covered].sum()) / self.total_chars


def _over(value: float, limit: float | None) -> bool:
    return limit is not None and value > limit


def _under(value: float, limit: float | None) -> bool:
    return limit is not None and value < limit


def gopher_quality(text: str, words: list[str], lines: list[str], t: HeuristicsSection) -> str | None:
    n = len(words)
    if _under(n, t.min_words):
        return "gopher_min_words"
    if _over(n, t.max_words):
        return "gopher_max_words"
    mean_len = sum(len(w) for w in words) / max(n, 1)
    if _under(mean_len, t.min_avg_word_length):
        return "gopher_min_avg_word_length"
    if _over(mean_len, t.max_avg_word_length):
        return "gopher_max_avg_word_length"
    symbols = text.count("#") + text.count("...") + text.count("…")
    if _over(symbols / max(n, 1), t.max_symbol_word_ratio):
        return "gopher_symbol_word_ratio"
    if lines and _over(sum(ln.lstrip().startswith(BULLETS) for ln in lines) / len(lines), t.max_bullet_lines_ratio):
        return "gopher_bullet_lines_ratio"
    if lines and _over(sum(ln.rstrip().endswith(ELLIPSES) for ln in lines) / len(lines), t.max_ellipsis_lines_ratio):
        return "gopher_ellipsis_lines_ratio"
    alpha_share = sum(_HAS_LETTER.search(w) is not None for w in words) / max(n, 1)
    if _under(alpha_share, t.max_non_alpha_words_ratio):
        return "gopher_alpha_words_ratio"
    if t.min_stop_words is not None:
        stop = set(t.stop_words)
        if t.stop_word_match == "exact":
            hits = sum(w.lower() in stop for w in words)
        else:
            suffixes = tuple(t.stop_words)
            hits = sum(w.endswith(suffixes) for w in words)
        if hits < t.min_stop_words:
            return "gopher_stop_words"
    return None


def gopher_repetition(text: str, words: list[str], lines: list[str], t: HeuristicsSection) -> str | None:
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    total = max(len(text), 1)
    for name, items, frac, char_frac in (("line", lines, t.dup_line_frac, t.dup_line_char_frac),
                                         ("para", paragraphs, t.dup_para_frac, t.dup_para_char_frac)):
        count, chars = _duplicates(items)
        if items and _over(count / len(items), frac):
            return f"gopher_dup_{name}_frac"
        if _over(chars / total, char_frac):
            return f"gopher_dup_{name}_char_frac"
    grams = _NGrams(words)
    for n, limit in t.top_n_grams:
        if _over(grams.top_char_frac(int(n)), limit):
            return f"gopher_top_{int(n)}_gram"
    for n, limit in t.dup_n_grams:
        if _over(grams.dup_char_frac(int(n)), limit):
            return f"gopher_dup_{int(n)}_gram"
    return None


def fineweb_lines(text: str, words: list[str], lines: list[str], t: HeuristicsSection) -> str | None:
    if not lines:
        return None
    ends = tuple(t.terminal_punctuation)
    if _under(sum(ln.rstrip().endswith(ends) for ln in lines) / len(lines), t.line_punct_thr):
        return "fineweb_line_punct_ratio"
    if _over(sum(len(ln) <= t.short_line_length for ln in lines) / len(lines), t.short_line_thr):
        return "fineweb_short_line_ratio"
    _, dup_chars = _duplicates(lines)
    if _over(dup_chars / max(len(text.replace("\n", "")), 1), t.char_duplicates_ratio):
        return "fineweb_char_dup_ratio"
    if _over(text.count("\n") / max(len(words), 1), t.new_line_ratio):
        return "fineweb_new_line_ratio"
    return None


def korean_rules(text: str, t: HeuristicsSection) -> str | None:
    if t.min_hangul_ratio is not None and hangul_letter_ratio(codepoints(text)) < t.min_hangul_ratio:
        return "korean_hangul_ratio"
    return None


def check(text: str, thresholds: HeuristicsSection) -> str | None:
    """Name of the first rule `text` fails, or None if it passes them all."""
    words = words_of(text)
    lines = [ln for ln in text.split("\n") if ln.strip()]
    return (korean_rules(text, thresholds)
            or gopher_quality(text, words, lines, thresholds)
            or gopher_repetition(text, words, lines, thresholds)
            or fineweb_lines(text, words, lines, thresholds))
