"""The two bilingual corpora shipped inside the package, so the demo and the tests run offline.

`help_corpus_files()`: the demo's corpus, Korean and English help pages of LibreOffice, GIMP,
GNOME and Debian (5.5 MB of English and 3.8 MB of Korean prose, 4.2 MB and 3.2 MB after the
demo's curation; 2.5 MB of gzip JSONL under corpus/help/), one file per language
and quality: `en_guide`, `en_reference`, `ko_guide`, `ko_reference` (each file's stem is a
source path of examples/demo/mixture.yaml). Rebuilt by tools/build_demo_corpus.py.

`demo_corpus_files()`: the small corpus (Korean law, English pydoc; 0.6 MB of plain JSONL)
that the tests' tokenizers, datasets and stored loss curves are built from, so they stay
fast and bit-identical. Rebuilt by tools/build_mini_corpus.py.

Sources, licences and the quality rule: megatron_kanana/data/corpus/README.md.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterator

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
HELP_DIR = CORPUS_DIR / "help"
HELP_FILES = ("en_guide", "en_reference", "ko_guide", "ko_reference")


def demo_corpus_files() -> list[Path]:
    """Paths of the small test corpus (ko.jsonl, en.jsonl), sorted; an error if the install lost them."""
    files = sorted(CORPUS_DIR.glob("*.jsonl"))
    if not files:
        raise FileNotFoundError(f"{CORPUS_DIR}: the embedded test corpus is missing (broken install?)")
    return files


def help_corpus_files() -> list[Path]:
    """Paths of the demo's help-pages corpus (<lang>_<quality>.jsonl.gz), in HELP_FILES order."""
    files = [HELP_DIR / f"{name}.jsonl.gz" for name in HELP_FILES]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{HELP_DIR}: the demo corpus lacks {', '.join(missing)} (broken install? "
                                "rebuild with tools/build_demo_corpus.py)")
    return files


def read_documents(path: Path) -> Iterator[dict]:
    """The JSON documents of a corpus file, plain or gzip."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)
