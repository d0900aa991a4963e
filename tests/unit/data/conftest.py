"""Shared fixtures for the data tests: two small tokenizers (one per kind) and a bilingual JSONL file."""
from __future__ import annotations

import json
import random

import pytest

from megatron_kanana.data.demo_corpus import demo_corpus_files


def corpus_texts() -> list[str]:
    texts = []
    for path in demo_corpus_files():
        with open(path, encoding="utf-8") as f:
            texts += [json.loads(line)["text"] for line in f]
    return texts


# Llama 3's pre-tokenizer regex, as its tokenizer.json spells it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def build_hf_tokenizer(path, vocab_size: int = 800, extra_tokens: int = 0, llama3_split: bool = False) -> str:
    """A byte-level BPE tokenizer.json trained in-process (no download), Llama-3-style specials.
    `llama3_split`: Llama 3's pre-tokenizer (Split on its regex, then ByteLevel without GPT-2's regex)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    if llama3_split:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|end_of_text|>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus_texts(), trainer)
    if extra_tokens:
        tok.add_tokens([f"<extra_{i}>" for i in range(extra_tokens)])
    tok.save(str(path))
    return str(path)


LLAMA3_SPECIALS = ["<|end_of_text|>", "<pad>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                   "<|eot_id|>"]
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")


def build_llama3_bpe(path, vocab_size: int = 1000) -> str:
    """Byte-level BPE trained in-process with Llama 3's pre-tokenizer split and chat specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=LLAMA3_SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_texts(), trainer)
    tok.save(str(path))
    return str(path)


@pytest.fixture(scope="session")
def hf_tokenizer(tmp_path_factory) -> str:
    return build_hf_tokenizer(tmp_path_factory.mktemp("hf") / "tokenizer.json")


@pytest.fixture(scope="session")
def llama3_tokenizer(tmp_path_factory) -> str:
    return build_hf_tokenizer(tmp_path_factory.mktemp("llama3") / "tokenizer.json", vocab_size=2000, llama3_split=True)


@pytest.fixture(scope="session")
def sp_tokenizer(tmp_path_factory) -> str:
    """A small SentencePiece tokenizer trained on the demo corpus through the CLI."""
    from megatron_kanana.cli import main

    out = tmp_path_factory.mktemp("sp")
    files = [str(p) for p in demo_corpus_files()]
    assert main(["train-tokenizer", "--input", *files, "--vocab-size", "1000", "--output", str(out)]) == 0
    return str(out)


@pytest.fixture(params=["hf", "sp"])
def tokenizer_path(request, hf_tokenizer, sp_tokenizer) -> str:
    return hf_tokenizer if request.param == "hf" else sp_tokenizer


@pytest.fixture(scope="session")
def bilingual_jsonl(tmp_path_factory) -> str:
    """~200 Korean and English documents, shuffled, with a few awkward ones (jamo, emoji, long)."""
    rng = random.Random(0)
    texts = corpus_texts()
    docs = rng.sample(texts, 200) + ["ㅋㅋ 진짜요? ㅎㅎ", "emoji 🙂 and 漢字 mixed", "한국어 " * 3000, "x"]
    rng.shuffle(docs)
    path = tmp_path_factory.mktemp("jsonl") / "bilingual.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    return str(path)



@pytest.fixture(scope="session")
def read_documents():
    """Reads every document of an indexed dataset back through megatron-core's IndexedDataset."""
    from megatron_kanana.mcore.indexed import IndexedDataset

    def read(prefix: str) -> list[list[int]]:
        ds = IndexedDataset(prefix)
        return [ds[i].tolist() for i in range(len(ds))]

    return read
