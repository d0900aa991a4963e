"""The chat template: exact ids and loss mask of a hand-checked conversation, per template."""
from __future__ import annotations

import pytest

from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.data.chat_template import Message, TemplateError, get_template
from tests.unit.posttrain.conftest import TWO_TURNS

MESSAGES = [Message(m["role"], m["content"]) for m in TWO_TURNS["messages"]]


def test_llama3_ids_and_mask_by_hand(toy_tokenizer):
    tok = load_tokenizer(toy_tokenizer)
    template = get_template("auto", tok)
    assert template.name == "llama3"
    ids, mask = template.render(MESSAGES, tok)
    # begin, then per turn: <|start_header_id|> ROLE <|end_header_id|> \n\n CONTENT <|eot_id|>
    expected = [3,
                4, 8, 5, 7, 11, 12, 6,            # system: be brief
                4, 9, 5, 7, 13, 14, 15, 16, 6,    # user: what is 1+2 ?
                4, 10, 5, 7, 17, 6,               # assistant: 3
                4, 9, 5, 7, 18, 6,                # user: thanks
                4, 10, 5, 7, 19, 6]               # assistant: bye
    trained = [0] + [0] * 7 + [0] * 9 + [0, 0, 0, 0, 1, 1] + [0] * 6 + [0, 0, 0, 0, 1, 1]
    assert ids == expected
    assert mask == trained


def test_generation_prompt_ends_with_assistant_header(toy_tokenizer):
    tok = load_tokenizer(toy_tokenizer)
    ids, mask = get_template("llama3", tok).render(MESSAGES[:2], tok, add_generation_prompt=True)
    assert ids[-4:] == [4, 10, 5, 7] and not any(mask)


def test_plain_template_without_specials(bpe_tokenizer):
    tok = load_tokenizer(bpe_tokenizer)
    template = get_template("auto", tok)
    assert template.name == "plain"
    ids, mask = template.render(MESSAGES, tok)
    trained = [i for i, m in zip(ids, mask) if m]
    assert trained == tok.encode("3") + [tok.eod] + tok.encode("bye") + [tok.eod]
    assert "### Assistant:" in tok.decode(ids) and "### User:" in tok.decode(ids)


def test_llama3_on_a_tokenizer_without_its_specials_is_an_error(bpe_tokenizer):
    with pytest.raises(TemplateError, match="<\\|begin_of_text\\|>.*plain"):
        get_template("llama3", load_tokenizer(bpe_tokenizer))
    with pytest.raises(TemplateError, match="unknown chat template 'chatml'"):
        get_template("chatml")
