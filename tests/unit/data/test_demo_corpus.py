"""The embedded corpora: present, bilingual, sensibly split, documented, small."""
from __future__ import annotations

import json
from pathlib import Path

from megatron_kanana.curation.config import load_pipeline_config
from megatron_kanana.curation.pipeline import run_pipeline
from megatron_kanana.data.demo_corpus import (CORPUS_DIR, HELP_DIR, HELP_FILES, demo_corpus_files, help_corpus_files,
                                              read_documents)
from megatron_kanana.data.help_pages import hangul_share
from megatron_kanana.data.tokenizer_training import is_korean


def test_test_corpus_is_present_bilingual_and_small():
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


def test_help_corpus_is_bilingual_split_by_quality_and_under_10_mb():
    files = help_corpus_files()
    assert [f.name for f in files] == [f"{name}.jsonl.gz" for name in HELP_FILES]
    assert sum(f.stat().st_size for f in files) < 10_000_000
    text_bytes = {"en": 0, "ko": 0}
    for f in files:
        lang, quality = f.name.split(".")[0].split("_")
        docs = list(read_documents(f))
        assert len(docs) > 400
        for doc in docs:
            assert (doc["lang"], doc["quality"]) == (lang, quality) and doc["licence"] and doc["source"]
            assert doc["text"].strip() and doc["id"].startswith(doc["source"] + "/")
        shares = [hangul_share(d["text"]) for d in docs]
        assert (min(shares) >= 0.3) if lang == "ko" else (max(shares) == 0.0)
        text_bytes[lang] += sum(len(d["text"].encode("utf-8")) for d in docs)
    assert min(text_bytes.values()) >= 3_000_000


def test_demo_curation_keeps_3_mb_of_each_language(tmp_path):
    # the bar is after the demo's curation (examples/demo/demo.py step 1), not before; ~15 s
    pipeline = Path(__file__).resolve().parents[3] / "examples" / "curation" / "kanana_pipeline.yaml"
    config = load_pipeline_config(pipeline)
    run_pipeline(config.replace(run=config.run.replace(workers=1)), HELP_DIR, tmp_path / "curated")
    kept = {"en": 0, "ko": 0}
    for name in HELP_FILES:
        for doc in read_documents(tmp_path / "curated" / "data" / f"{name}.jsonl"):
            kept[name[:2]] += len(doc["text"].encode("utf-8"))
    assert min(kept.values()) >= 3_000_000, kept


def test_readme_names_every_source_and_licence():
    readme = (CORPUS_DIR / "README.md").read_text(encoding="utf-8")
    assert "Constitution" in readme and "pydoc_data" in readme and "licen" in readme.lower()
    sources = {(d["source"], d["licence"]) for f in help_corpus_files() for d in read_documents(f)}
    for source, licence in sources:
        assert f"`{source}`" in readme and licence in readme, (source, licence)
    assert "apt-get download" in readme and "tools/build_demo_corpus.py" in readme
