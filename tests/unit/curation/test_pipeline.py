import json
import unicodedata
from pathlib import Path

import pytest

from megatron_kanana.cli import main
from megatron_kanana.curation import pipeline
from megatron_kanana.curation.classifier.model import FastTextClassifier
from megatron_kanana.curation.config import ClassifierTrainingSection, load_pipeline_config
from megatron_kanana.curation.pipeline import run_pipeline
from megatron_kanana.curation.shards import AtomicJsonlWriter
from tests.unit.curation.corpus import english_doc, korean_doc, write_jsonl

EXAMPLE = "examples/curation/kanana_pipeline.yaml"


def _config(**run):
    config = load_pipeline_config(EXAMPLE)
    return config.replace(run=config.run.replace(**{"workers": 1, "max_doc_bytes": 20_000, **run}))


def _corpus(root: Path) -> Path:
    ko = korean_doc(3)
    a = [{"id": i, "text": english_doc(i)} for i in range(4)] + [{"id": 10 + i, "text": korean_doc(i)} for i in range(4)]
    a.append({"id": "pii", "text": english_doc(50) + "\nWrite to bob@example.com or call 010-1234-5678 now."})
    b = [{"id": "nfd", "text": unicodedata.normalize("NFD", ko)},
         {"id": "respaced", "text": korean_doc(2).replace(" ", "", 3)},
         {"id": "de", "text": "Die Hauptstadt von Deutschland ist Berlin und die Stadt ist sehr schön und groß."},
         {"id": "short", "text": "Too short to keep."},
         {"id": "blank", "text": " \u200b\u3164 "},
         "{not json", "[1, 2]", '{"no_text": 1}', json.dumps({"text": "x" * 30_000})]
    write_jsonl(root / "a.jsonl", a)
    write_jsonl(root / "sub" / "b.jsonl", b)
    with open(root / "sub" / "b.jsonl", "ab") as f:
        f.write(b'{"text": "\xff\xfe broken"}\n' + b'{"text": "\\ud800 lone surrogate"}\n')
    return root


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _outputs(out: Path) -> dict[str, str]:
    return {p.relative_to(out).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(out.rglob("*.jsonl"))}


def test_end_to_end_stats_and_output(tmp_path):
    stats = run_pipeline(_config(), _corpus(tmp_path / "in"), tmp_path / "out").to_dict()
    assert stats["read"]["rejected"] == {"invalid_utf8": 2, "malformed_json": 2, "missing_text": 1, "too_large": 1}
    assert stats["normalise"]["rejected"] == {"empty": 1}
    assert stats["dedup"]["rejected"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert stats["language"]["rejected"] == {"language_other": 1}
    assert stats["heuristics"]["rejected"] == {"gopher_min_words": 1}
    assert stats["pii"]["counters"] == {"<EMAIL>": 1, "<PHONE>": 1}
    assert stats["minhash"]["mb_per_s"] > 0 and stats["language"]["docs_per_s"] > 0
    kept = _read(tmp_path / "out/data/a.jsonl") + _read(tmp_path / "out/data/sub__b.jsonl")
    by_id = {d["id"]: d for d in kept}
    assert sorted(by_id, key=str) == sorted([0, 1, 2, 3, 10, 11, 12, 13, "pii"], key=str)
    assert by_id[12]["cluster_size"] == 2 and by_id[13]["cluster_size"] == 2 and by_id[0]["cluster_size"] == 1
    assert by_id[10]["language"] == "ko" and by_id[0]["language"] == "en"
    assert "<EMAIL>" in by_id["pii"]["text"] and "bob@" not in by_id["pii"]["text"]
    rejected = {d["id"]: (d["reject_stage"], d["reject_reason"]) for d in _read(tmp_path / "out/rejected/sub__b.jsonl")}
    assert rejected == {"nfd": ("dedup", "exact_duplicate"), "respaced": ("dedup", "near_duplicate"),
                        "de": ("language", "language_other"), "short": ("heuristics", "gopher_min_words")}
    assert json.loads((tmp_path / "out/stats.json").read_text()) == stats


def test_resume_after_kill_does_not_duplicate(tmp_path, monkeypatch):
    src = _corpus(tmp_path / "in")
    clean = run_pipeline(_config(), src, tmp_path / "clean").to_dict()

    writes = {"n": 0}
    original = AtomicJsonlWriter.write

    def dying_write(self, doc):  # the process "dies" midway through pass 3's second shard
        writes["n"] += 1
        if writes["n"] == 12:
            raise KeyboardInterrupt("simulated kill")
        original(self, doc)

    monkeypatch.setattr(AtomicJsonlWriter, "write", dying_write)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_config(), src, tmp_path / "out")
    monkeypatch.setattr(AtomicJsonlWriter, "write", original)
    assert (tmp_path / "out/_done/a.jsonl.json").exists()
    assert not (tmp_path / "out/_done/sub__b.jsonl.json").exists()
    assert not (tmp_path / "out/data/sub__b.jsonl").exists()  # nothing that looks complete

    calls = []
    monkeypatch.setattr(pipeline, "_pass1", lambda *a: calls.append(a))
    resumed = run_pipeline(_config(), src, tmp_path / "out").to_dict()
    assert calls == []  # pass 1 and 2 were done; only the unfinished shard reran
    assert _outputs(tmp_path / "out") == _outputs(tmp_path / "clean")
    for stage in clean:
        assert {k: v for k, v in resumed[stage].items() if k in ("docs_in", "docs_out", "rejected", "counters")} == \
               {k: v for k, v in clean[stage].items() if k in ("docs_in", "docs_out", "rejected", "counters")}


def test_rerun_with_other_settings_is_refused(tmp_path):
    src = _corpus(tmp_path / "in")
    run_pipeline(_config(), src, tmp_path / "out")
    config = _config()
    with pytest.raises(ValueError, match="other input shards or settings"):
        run_pipeline(config.replace(dedup=config.dedup.replace(num_bands=10)), src, tmp_path / "out")


def test_quality_classifier_stage(tmp_path):
    texts = [english_doc(i) for i in range(10)] + [english_doc(i).replace("The", "Buy cheap") for i in range(10)]
    model = FastTextClassifier(ClassifierTrainingSection(buckets=1 << 12, dim=8, char_ngram_max=0, epochs=20))
    model.fit(texts, [1] * 10 + [0] * 10).save(tmp_path / "en.npz")
    src = write_jsonl(tmp_path / "in/x.jsonl", [{"text": english_doc(30)}, {"text": english_doc(31).replace("The", "Buy cheap")}])
    config = _config()
    config = config.replace(quality={"en": {"model_path": str(tmp_path / "en.npz"), "threshold": 0.5}})
    stats = run_pipeline(config, src.parent, tmp_path / "out").to_dict()
    assert stats["quality"]["rejected"] == {"quality_en": 1}
    (kept,) = _read(tmp_path / "out/data/x.jsonl")
    assert kept["quality_score"] >= 0.5 and kept["text"].startswith("The")


def test_cli_with_two_worker_processes(tmp_path, capsys):
    src = _corpus(tmp_path / "in")
    run_pipeline(_config(max_doc_bytes=1_000_000), src, tmp_path / "serial")  # the example's limit
    rc = main(["curate", "--config", EXAMPLE, "--input", str(src), "--output", str(tmp_path / "par"), "--workers", "2"])
    assert rc == 0
    assert "near_duplicate=1" in capsys.readouterr().out
    assert _outputs(tmp_path / "par") == _outputs(tmp_path / "serial")
