"""The embedded demo corpus: present, bilingual, sensibly split, documented, small."""
from __future__ import annotations

import json

from megatron_kanana.data.demo_corpus import CORPUS_DIR, demo_corpus_files
from megatron_kanana.data.tokenizer_training import is_korean


def test_corpus_is_present_bilingual_and_small():
    files = demo_corpus_files()
    assert [f.stem for f in files] == ["en", "ko"]
    assert sum(f.stat().st_size for f in files) < 3_000_000
    for f in files:
        docs = [json.loads(line)["text"] for line in f.read_text(encoding="utf-8").splitlines()]
        assert len(docs) > 100 and all(d.strip() for d in docs)
        korean = sum(map(is_korean, docs))
        if f.stem == "ko":
            assert korean == len(docs)
        else:
            assert korean == 0
    readme = (CORPUS_DIR / "README.md").read_text(encoding="utf-8")
    assert "Constitution" in readme and "pydoc_data" in readme and "licen" in readme.lower()
