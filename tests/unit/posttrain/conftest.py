"""Fixtures for the post-training tests: a hand-readable word-level tokenizer with Llama-3 chat
specials (ids are written out by hand in the tests), and the BPE tokenizer of the data tests."""
from __future__ import annotations

import json

import pytest

from tests.unit.data.conftest import build_hf_tokenizer

TOY_VOCAB = ["[UNK]", "<|end_of_text|>", "<pad>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
             "<|eot_id|>", "\n\n", "system", "user", "assistant", "be", "brief", "what", "is", "1+2", "?", "3",
             "thanks", "bye"]


def build_toy_tokenizer(path) -> str:
    """Words split on spaces, one id each (index in TOY_VOCAB); the <|...|> entries are special."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(TOY_VOCAB)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    tok.add_special_tokens([w for w in TOY_VOCAB if w.startswith("<")])
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def toy_tokenizer(tmp_path_factory) -> str:
    return build_toy_tokenizer(tmp_path_factory.mktemp("toy") / "tokenizer.json")


@pytest.fixture(scope="session")
def bpe_tokenizer(tmp_path_factory) -> str:
    """Byte-level BPE without chat specials: the plain template's case."""
    return build_hf_tokenizer(tmp_path_factory.mktemp("bpe") / "tokenizer.json")


TWO_TURNS = {"messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "what is 1+2 ?"},
    {"role": "assistant", "content": "3"},
    {"role": "user", "content": "thanks"},
    {"role": "assistant", "content": "bye"},
]}


def write_jsonl(path, records) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
            f.write("\n")
    return str(path)
