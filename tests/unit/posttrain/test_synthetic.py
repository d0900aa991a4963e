"""The toy post-training data: hedged answers appear at the requested rate, are wrong, and
are what pref-synthetic rejects; the default data does not change with the option."""
import random

import pytest

from megatron_kanana.posttrain import preference_synthetic, synthetic


def answers(convs):
    return [m["content"] for c in convs for m in c["messages"] if m["role"] == "assistant"]


def test_hedged_fraction_and_default_unchanged():
    plain = synthetic.conversations(300, seed=4)
    assert synthetic.conversations(300, seed=4, hedged_fraction=0.0) == plain
    assert not any(map(synthetic.is_hedged, answers(plain)))
    noisy = answers(synthetic.conversations(300, seed=4, hedged_fraction=0.3))
    rate = sum(map(synthetic.is_hedged, noisy)) / len(noisy)
    assert 0.22 < rate < 0.38, rate


def test_hedged_answers_are_wrong_and_are_the_rejected_style():
    rng = random.Random(0)
    for _ in range(50):
        op, a, b, result = synthetic.problem(rng)
        text = synthetic.hedged_wrong_answer(rng, "en", op, a, b, result)
        assert synthetic.is_hedged(text) and not text.endswith(f" is {result}.")
    for pair in preference_synthetic.pairs(20, seed=1):
        assert synthetic.is_hedged(pair["rejected"]) and not synthetic.is_hedged(pair["chosen"])


@pytest.mark.parametrize("fraction", ["-0.1", "1.5"])
def test_cli_refuses_a_bad_fraction(tmp_path, fraction):
    from megatron_kanana.cli import main

    assert main(["sft-synthetic", "--num", "3", "--output", str(tmp_path / "x.jsonl"),
                 "--hedged-fraction", fraction]) == 1
