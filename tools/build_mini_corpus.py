"""Rebuild the tests' small corpus, megatron_kanana/data/corpus/{ko,en}.jsonl.

    pip download --no-deps konlpy==0.6.0 -d /tmp/konlpy
    unzip /tmp/konlpy/konlpy-0.6.0-*.whl 'konlpy/data/corpus/*' -d /tmp/konlpy/ex
    python tools/build_mini_corpus.py --konlpy-corpus /tmp/konlpy/ex/konlpy/data/corpus

Only the text files of the konlpy wheel are read (the Korean Constitution and ten
National Assembly bills); none of konlpy's GPL code is used or copied. English comes
from CPython's `pydoc_data.topics`, present in every Python install. Both are split
into documents the way a web corpus would be: one Constitution article, one bill
section, one pydoc topic section per document.
"""
from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path

OUT_DIR = Path(__file__).resolve().parents[1] / "megatron_kanana" / "data" / "corpus"

# An article heading ("제1조", "제10조의2") opens a new document.
_ARTICLE = re.compile(r"^\s*제\d+조(의\d+)?(\(|\s|$)")
# A pydoc heading is a line followed by a line of '*', '=' or '-' of equal length.
_UNDERLINE = re.compile(r"^[*=\-]{3,}$")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n"))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def constitution_documents(path: Path) -> list[str]:
    """The preamble, then one document per article (chapter headings stay with the next article)."""
    docs, current = [], []
    for line in _clean(path.read_text(encoding="utf-8")).split("\n"):
        if _ARTICLE.match(line) and any(_ARTICLE.match(x) or len(x) > 200 for x in current):
            docs.append("\n".join(current).strip())
            current = []
        current.append(line.strip())
    docs.append("\n".join(current).strip())
    return [d for d in docs if d]


def bill_documents(path: Path) -> list[str]:
    """A bill is split at its page markers ("- 1 -"); each part is a document."""
    text = _clean(path.read_text(encoding="utf-8"))
    parts = re.split(r"\n\s*- \d+ -\s*\n", text)
    # Bills wrap lines at a fixed width mid-phrase; joining them gives natural paragraphs.
    docs = []
    for part in parts:
        paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", part)]
        doc = "\n".join(p for p in paragraphs if p)
        if len(doc) >= 40:
            docs.append(doc)
    return docs


def pydoc_documents() -> list[str]:
    """One document per pydoc topic section (a topic's text up to its next heading)."""
    import pydoc_data.topics

    docs = []
    for name in sorted(pydoc_data.topics.topics):
        lines = _clean(pydoc_data.topics.topics[name]).split("\n")
        current: list[str] = []
        for i, line in enumerate(lines):
            is_heading = i + 1 < len(lines) and _UNDERLINE.match(lines[i + 1]) and line.strip()
            if is_heading and sum(len(x) for x in current) > 400:
                docs.append("\n".join(current).strip())
                current = []
            current.append(line)
        docs.append("\n".join(current).strip())
    return [d for d in docs if len(d) >= 40]


def write_jsonl(path: Path, docs: list[str], source: str) -> None:
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, doc in enumerate(docs):
            f.write(json.dumps({"id": f"{source}-{i:04d}", "source": source, "text": doc}, ensure_ascii=False))
            f.write("\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--konlpy-corpus", type=Path, required=True, help="konlpy/data/corpus from the wheel")
    args = parser.parse_args()
    ko = constitution_documents(args.konlpy_corpus / "kolaw" / "constitution.txt")
    for bill in sorted((args.konlpy_corpus / "kobill").glob("*.txt")):
        ko += bill_documents(bill)
    en = pydoc_documents()
    write_jsonl(OUT_DIR / "ko.jsonl", ko, "ko")
    write_jsonl(OUT_DIR / "en.jsonl", en, "en")
    print(f"ko: {len(ko)} documents, {sum(map(len, ko))} characters")
    print(f"en: {len(en)} documents, {sum(map(len, en))} characters")


if __name__ == "__main__":
    main()
