"""Fixtures shared by the unit tests of several packages: a hand-readable word-level tokenizer
with Llama-3 chat specials (ids are written out by hand in the tests) and a byte-level BPE
tokenizer without them (chat templates live in data/, their users in posttrain/ and beyond)."""
from __future__ import annotations

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
