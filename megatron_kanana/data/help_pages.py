"""Help pages (HTML, DocBook XHTML, GNOME's Mallard XML) to plain prose documents, for the demo corpus.

`page_paragraphs(page, lang)` keeps a page's prose: paragraphs, headings, list items and
table cells, one paragraph per line, whitespace collapsed. It drops what is not prose
(scripts, navigation bars, tables of contents, index and search boxes, "related topics"
link lists, debug footers, code listings (HTML's <pre>, Mallard's block <code>), Mallard's
credits and licence block) and the paragraphs the translation left in another language:
a Korean page keeps only paragraphs that are at least 30% Hangul (the Korean help packages
leave untranslated strings in English), an English page only those with no Hangul. A
paragraph repeated on a page (a note's label, a menu path, a platform variant) is kept once.
tools/build_demo_corpus.py applies it to every page of the Debian help packages.
"""
from __future__ import annotations

import html.parser
import re
import unicodedata

# Elements whose end closes a paragraph; text inside others (a, span, em, ...) flows on.
BLOCKS = frozenset("p h1 h2 h3 h4 h5 h6 li dt dd tr caption blockquote div title ol ul table dl"
                   " item section note steps terms list tree page".split())  # the second line: Mallard
CELLS = frozenset(("td", "th"))
# Subtrees that are never prose, by tag, and by class or id of a div/aside/table.
# Inline code stays: in these manuals it names a command or key inside a sentence.
SKIP_TAGS = frozenset("head script style header footer aside nav pre noscript button input"
                      " info media screen".split())  # the second line: Mallard
SKIP_NAMES = frozenset(("navheader", "navfooter", "relatedtopics", "DEBUG", "SearchFrame", "DonationFrame",
                        "toc", "list-of-figures", "list-of-tables", "programlisting", "screen", "synopsis"))
# Mallard has one <code> element for both: inline inside a paragraph, a code listing when it sits
# directly in one of these block containers (gnome-devel-docs' tutorials have hundreds, some with
# Korean comments or a README's Korean text, which the Hangul share alone would let through).
CODE_LISTING_PARENTS = frozenset("page section item example listing note".split())
VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())
# A paragraph of a Korean page is Korean when at least this share of its letters are Hangul
# (as is_korean and the curation script ratio decide): a sentence naming English commands stays.
MIN_HANGUL_SHARE = 0.3


def hangul_share(text: str) -> float:
    """Hangul syllables and jamo over all letters (0 for a text without letters)."""
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return 0.0
    return sum("\uac00" <= c <= "\ud7a3" or "\u1100" <= c <= "\u11ff" or "\u3130" <= c <= "\u318f"
               for c in letters) / len(letters)


class _ProseParser(html.parser.HTMLParser):
    """Collects the text of block elements outside skipped subtrees, one string per block."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []   # (tag, skipped) of open non-void elements
        self.blocks: list[str] = []
        self.current: list[str] = []

    def _skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.blocks.append(text)
        self.current = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID:
            if tag == "br":
                self.current.append(" ")
            return
        names = {v for k, v in attrs if k in ("class", "id") and v for v in v.split()}
        listing = tag == "code" and bool(self.stack) and self.stack[-1][0] in CODE_LISTING_PARENTS
        skipped = self._skipping() or tag in SKIP_TAGS or bool(names & SKIP_NAMES) or listing
        if not self._skipping() and (tag in BLOCKS or skipped):
            self._flush()
        if tag in CELLS and not skipped:
            self.current.append(" ")
        self.stack.append((tag, skipped))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in VOID:  # <div/> in XHTML opens and closes at once
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)
        else:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if not any(t == tag for t, _ in self.stack):
            return  # a stray end tag
        while self.stack:
            open_tag, skipped = self.stack.pop()
            if open_tag == tag:
                break
        if not skipped and tag in BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skipping():
            self.current.append(data)


def page_paragraphs(page: str, lang: str) -> list[str]:
    """The prose paragraphs of one help page in `lang` ("ko" or "en"), NFC-normalised, in page order."""
    if lang not in ("ko", "en"):
        raise ValueError(f"lang must be 'ko' or 'en', got {lang!r}")
    parser = _ProseParser()
    parser.feed(unicodedata.normalize("NFC", page))
    parser.close()
    parser._flush()
    keep: dict[str, None] = {}  # insertion-ordered set: first occurrences in page order
    for block in parser.blocks:
        share = hangul_share(block)
        if (share >= MIN_HANGUL_SHARE) if lang == "ko" else (share == 0.0):
            keep.setdefault(re.sub(r"\s+([.,;:!?)])", r"\1", block))
    return list(keep)
