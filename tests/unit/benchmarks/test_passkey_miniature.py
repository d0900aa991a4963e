"""The passkey generator (megatron_kanana/evaluation/passkey.py) under the word-level tokenizer of
benchmarks/passkey_miniature.py: prompts of an exact token length with the key at varying depths,
answered by the key, one token per word."""
import random

import pytest

from megatron_kanana.evaluation import passkey as generator
from tests.scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("benchmarks/passkey_miniature.py")


def test_prompts_have_the_exact_length_and_the_key_at_varying_depths(bench, tmp_path):
    from megatron_kanana.data.tokenizer import load_tokenizer

    bench.build_tokenizer(tmp_path / "tokenizer.json")
    tokenizer = load_tokenizer(tmp_path / "tokenizer.json")
    rng = random.Random(0)
    depths = set()
    for length in (64, 256):
        for _ in range(20):
            prompt, key = generator.passkey_example(rng, length)
            ids = tokenizer.encode(prompt)
            assert len(ids) == length and tokenizer.encode(key) == [tokenizer.encode(d)[0] for d in key.split()]
            assert prompt.endswith("what is the pass key ? the pass key :") and len(key.split()) == generator.KEY_LENGTH
            needle = prompt.index(f"the pass key : {key} . remember it . {key} is the pass key .")
            depths.add(len(prompt[:needle].split()))
            assert "[UNK]" not in tokenizer.decode(ids)
    assert len(depths) > 20  # the needle moves through the window
    document = generator.passkey_document(rng, 100)
    assert len(tokenizer.encode(document)) == 100 and document.endswith(" .")
    with pytest.raises(ValueError, match="cannot hold"):
        generator.passkey_example(rng, 10)
