"""Stage 4: heuristic quality filters, one threshold set per language.

Gopher quality and repetition rules (Rae et al. 2021), FineWeb's line rules
(Penedo et al. 2024) and a Korean Hangul-share rule. Words are whitespace tokens
holding at least one non-punctuation character; for Korean those are eojeol
(a stem with its particles attached), which is why Korean stop words may match
as suffixes (`stop_word_match: suffix`). The first failing rule rejects the
document and names itself in the statistics; a threshold of None disables a rule.
"""
from __future__ import annotations

import string
import unicodedata
from collections import Counter

from megatron_kanana.curation.config import HeuristicsSection
from megatron_kanana.curation.script import codepoints, hangul_letter_ratio

BULLETS = ("•", "●", "‣", "▪", "◦", "·", "-", "*", "–", "○", "■", "□", "▶", "►", "✓", "※")
ELLIPSES = ("...", "…")


def _is_punct(ch: str) -> bool:
    return ch in string.punctuation or unicodedata.category(ch)[0] in "PS"


def words_of(text: str) -> list[str]:
    return [t for t in text.split() if not all(_is_punct(c) for c in t)]


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


def _top_ngram_char_frac(words: list[str], n: int, total_chars: int) -> float:
    grams = Counter(" ".join(words[i:i + n]) for i in range(len(words) - n + 1))
    if not grams:
        return 0.0
    gram, count = grams.most_common(1)[0]
    return len(gram) * count / total_chars if count > 1 else 0.0


def _dup_ngram_char_frac(words: list[str], n: int, total_chars: int) -> float:
    """Share of word characters covered by an n-gram that already occurred."""
    seen, covered = set(), [False] * len(words)
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        if gram in seen:
            covered[i:i + n] = [True] * n
        else:
            seen.add(gram)
    return sum(len(w) for w, c in zip(words, covered) if c) / total_chars


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
    alpha_share = sum(any(c.isalpha() for c in w) for w in words) / max(n, 1)
    if _under(alpha_share, t.max_non_alpha_words_ratio):
        return "gopher_alpha_words_ratio"
    if t.min_stop_words is not None:
        stop = set(t.stop_words)
        if t.stop_word_match == "exact":
            hits = sum(w.lower() in stop for w in words)
        else:
            hits = sum(any(w.endswith(s) for s in stop) for w in words)
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
    word_chars = max(sum(len(w) for w in words), 1)
    for n, limit in t.top_n_grams:
        if _over(_top_ngram_char_frac(words, int(n), word_chars), limit):
            return f"gopher_top_{int(n)}_gram"
    for n, limit in t.dup_n_grams:
        if _over(_dup_ngram_char_frac(words, int(n), word_chars), limit):
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
