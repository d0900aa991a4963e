"""Which tokenizer files a megatron checkpoint passes on to a converted/pruned output."""
from __future__ import annotations

from megatron_kanana.surgery.convert import _tokenizer_files


def test_directory_file_absolute_and_missing(tmp_path):
    ckpt = tmp_path / "iter_0000000"
    (ckpt / "tokenizer").mkdir(parents=True)
    (ckpt / "tokenizer" / "tokenizer.json").write_text("{}")
    assert [p.name for p in _tokenizer_files(ckpt, "tokenizer")] == ["tokenizer.json"]
    trained_with = tmp_path / "tok.json"  # a training run records the tokenizer file it used
    trained_with.write_text("{}")
    assert _tokenizer_files(ckpt, str(trained_with)) == [trained_with]
    assert _tokenizer_files(ckpt, str(tmp_path / "gone.json")) == []
    assert _tokenizer_files(ckpt, None) == []
