"""The tiktoken fast path (data/fast_bpe.py): taken where exact, else a logged fall-back; ids never change."""
from __future__ import annotations

import json
import logging

import pytest
from tokenizers import Tokenizer as RawHF

from megatron_kanana.data.fast_bpe import build_fast_encoder
from megatron_kanana.data.preprocess import preprocess
from megatron_kanana.data.tokenizer import load_tokenizer
from tests.unit.data.conftest import corpus_texts

SPECIAL_TEXT = "앞 <|end_of_text|>뒤<pad> and <|end_of_text|><|end_of_text|>x"


def raw_ids(path: str, texts: list[str]) -> list[list[int]]:
    """`tokenizers`' own ids, as the project encodes (added tokens matched, no BOS/EOS)."""
    return [e.ids for e in RawHF.from_file(path).encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("kind", ["llama3_split", "gpt2_bytelevel"])
def test_fast_path_ids_equal_tokenizers_on_korean_and_english(kind, llama3_tokenizer, hf_tokenizer):
    path = llama3_tokenizer if kind == "llama3_split" else hf_tokenizer
    tok = load_tokenizer(path)
    texts = corpus_texts() + [SPECIAL_TEXT, "ㅋㅋ 진짜요? 🙂 1234567", ""]
    assert tok.encoder_name == "tiktoken"
    assert tok.encode_batch(texts) == raw_ids(path, texts)
    assert [tok.encode(t) for t in texts[-3:]] == raw_ids(path, texts[-3:])
    assert tok.eod in tok.encode(SPECIAL_TEXT)


def test_preprocess_on_the_fast_path_writes_tokenizers_ids(tmp_path, llama3_tokenizer, bilingual_jsonl,
                                                         read_documents):
    preprocess([bilingual_jsonl], llama3_tokenizer, str(tmp_path / "out"), workers=1, append_eod=True)
    with open(bilingual_jsonl, encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f]
    eod = load_tokenizer(llama3_tokenizer).eod
    assert read_documents(str(tmp_path / "out")) == [ids + [eod] for ids in raw_ids(llama3_tokenizer, texts)]


def _edit(src: str, dst, change) -> str:
    spec = json.loads(open(src, encoding="utf-8").read())
    change(spec)
    dst.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return str(dst)


def test_unsupported_shape_falls_back_with_one_log_line(tmp_path, llama3_tokenizer, caplog):
    path = _edit(llama3_tokenizer, tmp_path / "tokenizer.json",
                 lambda s: s.update(normalizer={"type": "NFKC"}))
    with caplog.at_level(logging.INFO, logger="megatron_kanana.data.fast_bpe"):
        tok = load_tokenizer(path)
        texts = corpus_texts()[:50]
        assert tok.encode_batch(texts) == raw_ids(path, texts)
    assert tok.encoder_name == "tokenizers"
    assert [r.getMessage() for r in caplog.records if "normalizer" in r.getMessage()] != []
    assert len(caplog.records) == 1


def test_a_disagreeing_tokenizer_falls_back_and_keeps_its_ids(tmp_path, llama3_tokenizer, caplog):
    """A vocabulary entry no merge produces: tiktoken would emit it for a whole word, tokenizers would not."""
    vocab = json.loads(open(llama3_tokenizer, encoding="utf-8").read())["model"]["vocab"]
    texts = corpus_texts()[:20]
    words = {w for t in texts for w in t.split() if w.isalpha() and w.isascii() and len(w) > 6
             and "Ġ" + w not in vocab and f" {w} " in t}
    word = "Ġ" + sorted(words)[0]

    def add_unreachable(spec):
        spec["model"]["vocab"][word] = max(spec["model"]["vocab"].values()) + 1

    path = _edit(llama3_tokenizer, tmp_path / "tokenizer.json", add_unreachable)
    with caplog.at_level(logging.WARNING, logger="megatron_kanana.data.fast_bpe"):
        tok = load_tokenizer(path)
        assert tok.encoder_name == "tokenizers"
    assert "differ" in caplog.text
    assert tok.encode_batch(texts) == raw_ids(path, texts)


def test_self_check_compares_against_the_reference(llama3_tokenizer, hf_tokenizer):
    """The check is real: against another tokenizer's ids the fast encoder is refused."""
    assert build_fast_encoder(llama3_tokenizer, RawHF.from_file(llama3_tokenizer)) is not None
    assert build_fast_encoder(llama3_tokenizer, RawHF.from_file(hf_tokenizer)) is None


def test_merge_out_of_id_order_or_shared_ids_fall_back(tmp_path, llama3_tokenizer):
    def swap_first_merges(spec):
        merges = spec["model"]["merges"]
        merges[0], merges[-1] = merges[-1], merges[0]

    def share_an_id(spec):
        vocab = spec["model"]["vocab"]
        vocab["Ġzzzz"] = vocab["a"]

    for change in (swap_first_merges, share_an_id):
        path = _edit(llama3_tokenizer, tmp_path / "tokenizer.json", change)
        assert load_tokenizer(path).encoder_name == "tokenizers", change.__name__

