"""Passkey-retrieval prompts of our own (after Mohtashami & Jaggi 2023), one generator for
the local lm-eval tasks `kanana_passkey_{128,256,512}` (tools/build_passkey_task.py) and
the long-context miniature that trains on documents of the same form
(benchmarks/passkey_miniature.py).

    prompt, key = passkey_example(random.Random(0), 256)   # 256 words, ends "the pass key :"
    doc = passkey_document(rng, 128)                       # a training document: prompt, key, "."

A prompt is a repeated filler ("the grass is green . the sky is blue . ..."), somewhere in
it the needle "the pass key : 37 . remember it . 37 is the pass key .", and at the end
"what is the pass key ? the pass key :"; the answer is the key, one of 90 numbers (10-99),
the only number in the prompt. Lengths are in words: under the benchmark's word-level
tokenizer (every word in `vocabulary()` is one token) they are exact token counts; other
tokenizers give more (the demo's 8,192-piece BPE: about 1.45 tokens a word, 742 for a 512-word
prompt, a key one or two tokens).
"""
from __future__ import annotations

import random

FILLER = "the grass is green . the sky is blue . the sun is yellow . here we go . there and back again ."
SENTENCES = [s.strip() + " ." for s in FILLER.split(" .") if s.strip()]
NEEDLE = "the pass key : {key} . remember it . {key} is the pass key ."
QUESTION = "what is the pass key ? the pass key : {key} ."
KEY_TOKENS = tuple(str(n) for n in range(10, 100))
KEY_LENGTH = 1  # words of a key (the code handles longer keys; one keeps retrieval a single look-up)


def vocabulary(keys: tuple[str, ...] = KEY_TOKENS) -> list[str]:
    """Every word a prompt or document can hold: the template's words, sorted, then the keys."""
    words = sorted({w for text in (FILLER, NEEDLE, QUESTION) for w in text.split() if w != "{key}"})
    return words + list(keys)


def passkey_example(rng: random.Random, num_words: int, keys: tuple[str, ...] = KEY_TOKENS,
                    key_length: int = KEY_LENGTH) -> tuple[str, str]:
    """(prompt, key): a prompt of exactly `num_words` words ending "the pass key :", answered by
    `key` (`key_length` distinct words of `keys`). The needle starts after a uniformly drawn
    number of filler words."""
    key = " ".join(rng.sample(keys, key_length))
    needle, question = NEEDLE.format(key=key).split(), QUESTION.format(key=key).split()[:-key_length - 1]
    filler_len = num_words - len(needle) - len(question)
    if filler_len < 0:
        raise ValueError(f"passkey_example: {num_words} words cannot hold the needle and the question")
    filler = (" ".join(SENTENCES[i % len(SENTENCES)] for i in range(filler_len // 3 + 2))).split()[:filler_len]
    depth = rng.randrange(filler_len + 1)
    words = filler[:depth] + needle + filler[depth:] + question
    return " ".join(words), key


def passkey_document(rng: random.Random, num_words: int, keys: tuple[str, ...] = KEY_TOKENS,
                     key_length: int = KEY_LENGTH) -> str:
    """A training document of `num_words` words: a prompt, its key and a full stop."""
    prompt, key = passkey_example(rng, num_words - key_length - 1, keys, key_length)
    return f"{prompt} {key} ."


def held_out(num: int, lengths: tuple[int, ...], seed: int, keys: tuple[str, ...] = KEY_TOKENS
             ) -> dict[int, list[tuple[str, str]]]:
    """`num` (prompt, key) pairs per length, drawn in order of `lengths` from one seeded stream.
    A length is the scored input: the prompt and a longer key's words but its last."""
    rng = random.Random(seed)
    return {n: [passkey_example(rng, n - KEY_LENGTH + 1, keys) for _ in range(num)] for n in lengths}
