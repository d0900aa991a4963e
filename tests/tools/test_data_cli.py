"""The data subcommands of `kanana`, run in-process through cli.main."""
from __future__ import annotations

import json

from megatron_kanana.cli import main
from tests.unit.data.conftest import build_hf_tokenizer


def test_preprocess_merge_and_mixture_show(tmp_path, capsys):
    tok = build_hf_tokenizer(tmp_path / "tokenizer.json", vocab_size=400)
    lines = [json.dumps({"text": "안녕하세요 hello"}, ensure_ascii=False), "{oops", json.dumps({"text": "world"})]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["--tokenizer", tok, "--workers", "2", "--append-eod"]
    assert main(["preprocess", "--input", str(tmp_path / "a.jsonl"), "--output-prefix", str(tmp_path / "d-0"), *args]) == 0
    out = capsys.readouterr().out
    assert "2 documents" in out and "docs/s" in out and "tokens/s" in out and "MB/s" in out
    assert "1 malformed json" in out and f"{tmp_path / 'a.jsonl'}:2: malformed json" in out
    assert main(["preprocess", "--input", str(tmp_path / "a.jsonl"), "--output-prefix", str(tmp_path / "d-0"), *args]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["preprocess", "--input", str(tmp_path / "a.jsonl"), "--output-prefix", str(tmp_path / "x"),
                 "--strict", *args]) == 2
    assert "a.jsonl:2: malformed json" in capsys.readouterr().err
    assert main(["preprocess", "--input", str(tmp_path / "a.jsonl"), "--output-prefix", str(tmp_path / "d-1"), *args]) == 0
    assert main(["preprocess-merge", "--input", str(tmp_path / "d-*"), "--output-prefix", str(tmp_path / "all")]) == 0
    (tmp_path / "m.yaml").write_text("stages:\n- name: s\n  tokens: 1000\n  sources:\n"
                                     "  - {path: all, category: mixed, weight: 1}\n")
    capsys.readouterr()
    assert main(["mixture", "show", str(tmp_path / "m.yaml"), "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stage s: budget 1k tokens" in out and "WARNING: stage s: all would be repeated" in out
    (tmp_path / "bad.yaml").write_text("stages: []\n")
    assert main(["mixture", "show", str(tmp_path / "bad.yaml")]) == 1
    assert "stages: needs at least one stage" in capsys.readouterr().out
