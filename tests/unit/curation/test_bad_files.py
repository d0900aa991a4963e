"""Malformed inputs to curation are errors naming the file (and line), not tracebacks."""
import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.curation.classifier.labels import KeywordScorer, read_texts
from megatron_kanana.curation.config import load_pipeline_config


def test_pipeline_config_that_is_not_yaml(tmp_path):
    path = tmp_path / "pipe.yaml"
    path.write_text("dedup: [unclosed\n")
    with pytest.raises(ConfigError, match=r"pipe.yaml: not valid YAML"):
        load_pipeline_config(path)


def test_keyword_file_must_be_a_json_object(tmp_path):
    for text, match in (("[1, 2]", "expected a JSON object"), ("{oops", "not a readable JSON keyword file")):
        path = tmp_path / "kw.json"
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            KeywordScorer.from_file(path)


def test_invalid_utf8_line_is_reported_with_its_place(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xff\xfe"}\n')
    docs = read_texts(path)
    assert next(docs)["text"] == "ok"
    with pytest.raises(ValueError, match=r"docs.jsonl:2: not JSON"):
        next(docs)
