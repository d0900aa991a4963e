"""The exported Jinja chat template: transformers' `apply_chat_template` gives exactly the ids
the project's template renders (piece by piece), for byte-level BPE with Llama-3 specials and for
the demo's SentencePiece tokenizer, on multi-turn conversations with a system turn."""
from __future__ import annotations

import json

import pytest

from megatron_kanana.checkpointing.hf_export import complete_export
from megatron_kanana.data.chat_template import Message, TemplateError, get_template, to_jinja
from megatron_kanana.data.tokenizer import load_tokenizer
from tests.unit.data.conftest import build_llama3_bpe

transformers = pytest.importorskip("transformers")

CONVERSATIONS = [
    [("system", "You are a careful assistant. 간결하게 답하세요."), ("user", "What is 12+30?"), ("assistant", "42."),
     ("user", "그럼 42에 8을 더하면?"), ("assistant", "50입니다.")],
    [("system", "be brief"), ("user", " leading space, trailing newline\n"), ("assistant", ""),
     ("user", "tabs\tand  double  spaces"), ("assistant", "ㅋㅋ 진짜요? 🙂")],
    [("system", "x"), ("user", "1234567 digits"), ("assistant", "ok\n\nsecond paragraph")],
]


@pytest.fixture(scope="module")
def llama3_bpe(tmp_path_factory) -> str:
    return build_llama3_bpe(tmp_path_factory.mktemp("llama3") / "tokenizer.json")


def _export_tokenizer(tmp_path, tokenizer_file: str):
    """The tokenizer part of an export, as `kanana convert --to hf` writes it."""
    import shutil
    from pathlib import Path

    src = Path(tokenizer_file)
    shutil.copy2(src if src.is_file() else src / "tokenizer.model", tmp_path)
    config = complete_export(tmp_path, {"model_type": "llama", "max_position_embeddings": 256}, {})
    (tmp_path / "config.json").write_text(json.dumps(config))
    return transformers.AutoTokenizer.from_pretrained(str(tmp_path)), config


@pytest.mark.parametrize("kind", ["llama3_bpe", "sentencepiece"])
def test_apply_chat_template_equals_project_rendering(kind, llama3_bpe, sp_tokenizer, tmp_path):
    path = llama3_bpe if kind == "llama3_bpe" else sp_tokenizer
    ours = load_tokenizer(path)
    template = get_template("auto", ours)
    assert template.name == ("llama3" if kind == "llama3_bpe" else "plain")
    hf, _ = _export_tokenizer(tmp_path, path)
    for conversation in CONVERSATIONS:
        messages = [Message(r, c) for r, c in conversation]
        for prompt in (False, True):
            turns = messages[:-1] if prompt else messages
            want, _ = template.render(turns, ours, add_generation_prompt=prompt)
            got = hf.apply_chat_template([{"role": m.role, "content": m.content} for m in turns],
                                         add_generation_prompt=prompt, tokenize=True, return_dict=False)
            assert list(got) == want, (kind, conversation, prompt)


def test_llama3_template_without_chat_specials_is_refused(hf_tokenizer):
    tok = load_tokenizer(hf_tokenizer)
    with pytest.raises(TemplateError, match=r"needs special tokens \['<\|begin_of_text\|>'"):
        to_jinja(get_template("llama3"), tok)
