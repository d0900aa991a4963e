"""The small bilingual corpus shipped inside the package, so the demo runs offline.

`demo_corpus_files()` returns the JSONL files (one document per line, text in "text");
each file's stem is its category in examples/demo/mixture.yaml ("ko", "en").
Sources and licences: megatron_kanana/data/corpus/README.md; rebuilt by
tools/build_demo_corpus.py.
"""
from __future__ import annotations

from pathlib import Path

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"


def demo_corpus_files() -> list[Path]:
    """Paths of the embedded corpus files, sorted; an error if the install lost them."""
    files = sorted(CORPUS_DIR.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{CORPUS_DIR}: the embedded demo corpus is missing (broken install?)")
    return files
