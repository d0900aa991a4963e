"""Both tokenizer kinds behind one interface; the bilingual SentencePiece trainer's guarantees."""
from __future__ import annotations

import json
import unicodedata

import pytest

from megatron_kanana.data.tokenizer import (HFTokenizer, SentencePieceTokenizer, TokenizerError, load_tokenizer)
from megatron_kanana.data.tokenizer_training import MAX_LINE_BYTES, is_korean, sample_bilingual, training_lines


def test_load_picks_the_kind(hf_tokenizer, sp_tokenizer):
    assert isinstance(load_tokenizer(hf_tokenizer), HFTokenizer)
    assert isinstance(load_tokenizer(sp_tokenizer), SentencePieceTokenizer)
    assert isinstance(load_tokenizer(sp_tokenizer + "/tokenizer.model"), SentencePieceTokenizer)


def test_interface(tokenizer_path):
    tok = load_tokenizer(tokenizer_path)
    text = "대한민국은 민주공화국이다. The \"assert\" statement 2024."
    ids = tok.encode(text)
    assert ids and all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text
    assert tok.encode_batch([text, "x"]) == [ids, tok.encode("x")]
    assert tok.eod != tok.pad and tok.eod not in ids and tok.pad not in ids
    ident = tok.unique_identifiers
    assert ident["vocab_size"] == tok.vocab_size and ident["tokenizer_path"] == tok.path
    json.dumps(ident)  # megatron-core hashes it as JSON
    assert tok.index_dtype_name() == "uint16"


def test_sentencepiece_keeps_compatibility_jamo(sp_tokenizer):
    tok = load_tokenizer(sp_tokenizer)
    # nmt_nfkc would turn compatibility jamo (U+314B) into conjoining jamo (U+110F).
    assert tok.decode(tok.encode("ㅋㅋ")) == "ㅋㅋ"
    assert tok.decode(tok.encode("웃겨 ㅋㅋㅋ ㅠㅠ")) == "웃겨 ㅋㅋㅋ ㅠㅠ"


def test_sentencepiece_normalises_to_nfc_and_falls_back_to_bytes(sp_tokenizer):
    tok = load_tokenizer(sp_tokenizer)
    decomposed = unicodedata.normalize("NFD", "한국어 café")
    assert decomposed != "한국어 café"
    assert tok.decode(tok.encode(decomposed)) == "한국어 café"
    rare = "🙂 龘 ∰"  # not in a 1000-piece vocabulary: byte pieces, never <unk>
    ids = tok.encode(rare)
    assert tok._sp.unk_id() not in ids and tok.decode(ids) == rare


def test_sentencepiece_splits_digits_and_keeps_whitespace(sp_tokenizer):
    tok = load_tokenizer(sp_tokenizer)
    pieces = tok._sp.encode("2024", out_type=str)
    assert [p.lstrip("▁") for p in pieces if p.lstrip("▁")] == ["2", "0", "2", "4"]
    assert tok.decode(tok.encode("a  b\n    c")) == "a  b\n    c"
    assert (tok.vocab_size, tok.pad, tok.eod) == (1000, 0, 3)


def test_korean_ratio_is_honoured():
    lines = ["대한민국 헌법 제1조 대한민국은 민주공화국이다"] * 500 + ["the quick brown fox jumps over"] * 500
    for ratio in (0.2, 0.5, 0.8):
        chosen, stats = sample_bilingual(iter(lines), ratio, max_lines=10_000)
        assert abs(stats.korean_share - ratio) < 0.05
        korean_chars = sum(len(line) for line in chosen if is_korean(line))
        assert korean_chars / sum(map(len, chosen)) == pytest.approx(ratio, abs=0.05)
    with pytest.raises(ValueError, match="needs English"):
        sample_bilingual(iter(lines[:500]), 0.5, 100)


def test_long_lines_are_cut_not_dropped(tmp_path):
    long_line = "가" * 20_000  # 60 kB of UTF-8: SentencePiece would silently skip it
    path = tmp_path / "long.jsonl"
    path.write_text(json.dumps({"text": long_line}, ensure_ascii=False) + "\n", encoding="utf-8")
    pieces = list(training_lines([str(path)], "text"))
    assert "".join(pieces) == long_line
    assert all(len(p.encode("utf-8")) <= MAX_LINE_BYTES for p in pieces)


def test_hf_specials_from_tokenizer_config(tmp_path, hf_tokenizer):
    d = tmp_path / "tok"
    d.mkdir()
    (d / "tokenizer.json").write_text(open(hf_tokenizer, encoding="utf-8").read(), encoding="utf-8")
    (d / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>", "pad_token": "<|end_of_text|>"}))
    tok = load_tokenizer(d)
    base = load_tokenizer(hf_tokenizer)
    assert (tok.eod, tok.pad) == (base.pad, base.eod)


def test_tokenizer_errors(tmp_path, hf_tokenizer):
    with pytest.raises(TokenizerError, match="no such tokenizer"):
        load_tokenizer(tmp_path / "nope.json")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(TokenizerError, match="unknown tokenizer kind"):
        load_tokenizer(tmp_path / "x.txt")
    with pytest.raises(TokenizerError, match="neither tokenizer.json nor tokenizer.model"):
        load_tokenizer(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a readable"):
        load_tokenizer(tmp_path / "bad.json")
    with pytest.raises(TokenizerError, match="no pad token"):
        HFTokenizer(hf_tokenizer, pad_token="<nope>")


def test_big_vocab_needs_int32(tmp_path):
    from tests.unit.data.conftest import build_hf_tokenizer

    tok = load_tokenizer(build_hf_tokenizer(tmp_path / "tokenizer.json", vocab_size=300, extra_tokens=66_000))
    assert tok.vocab_size > 65536 and tok.index_dtype_name() == "int32"


def test_a_sentencepiece_tokenizer_serves_the_lm_eval_model(sp_tokenizer):
    # KananaLM records which encoder ran (lm-eval's model info); a SentencePiece model names itself
    from types import SimpleNamespace

    from megatron_kanana.evaluation.lm import KananaLM

    lm = KananaLM([], load_tokenizer(sp_tokenizer), max_length=8, batch_size=1,
                  dp=SimpleNamespace(rank=0, world_size=1))
    assert lm.encoder_name == "sentencepiece"
