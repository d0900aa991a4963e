"""Stage 1: text normalisation (NFC, invisible characters out, whitespace runs collapsed).

NFC, never NFD: NFD splits every Hangul syllable into two or three jamo, so word
statistics and MinHash shingles would see letters that no reader sees (the
datatrove behaviour this project avoids). NFD input is composed back here, so a
decomposed and a precomposed copy of a page become exact duplicates.
"""
from __future__ import annotations

import re
import unicodedata

from megatron_kanana.curation.config import NormaliseSection

# Zero-width characters and Hangul fillers. The fillers are Unicode letters
# (Lo) that render blank, so spam uses them to pad "words" past length filters.
INVISIBLE_CHARS = (
    "\u200b\u200c\u200d\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"
    "\u3164\u115f\u1160\uffa0"
)
_INVISIBLE = re.compile(f"[{INVISIBLE_CHARS}]")
# Horizontal whitespace other than newline, including NBSP and the ideographic space.
_SPACE_RUN = re.compile(r"[^\S\n]+")
_SPACE_AROUND_NEWLINE = re.compile(r" ?\n ?")
_NEWLINE_RUN = re.compile(r"\n{3,}")


def normalise_text(text: str, section: NormaliseSection) -> str:
    """Return `text` in NFC with invisible characters removed and whitespace collapsed."""
    if section.remove_invisible:
        # Before NFC, so jamo separated only by a zero-width space still compose.
        text = _INVISIBLE.sub("", text)
    text = unicodedata.normalize(section.unicode_form, text)
    if section.collapse_whitespace:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        text = _SPACE_RUN.sub(" ", text)
        text = _SPACE_AROUND_NEWLINE.sub("\n", text)
        # Paragraph breaks (blank lines) carry meaning for the repetition rules; keep one.
        text = _NEWLINE_RUN.sub("\n\n", text)
        text = text.strip()
    return text
