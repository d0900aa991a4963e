"""Token choice (mcore/sampling.py) and the batched-generation attention mask, single process."""
import pytest
import torch

from megatron_kanana.mcore.generate import attention_mask
from megatron_kanana.mcore.sampling import SamplingSettings, choose_tokens, filter_logits, penalize_repeats, seen_ids

NEG_INF = float("-inf")


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([[0.1, 3.0, 2.0, -1.0, 2.5]])
    out = filter_logits(logits, top_k=2)
    assert torch.isfinite(out).tolist() == [[False, True, False, False, True]]
    assert out[0, 1] == 3.0 and out[0, 4] == 2.5


def test_top_p_keeps_the_smallest_prefix_reaching_p():
    probs = torch.tensor([[0.5, 0.05, 0.3, 0.15]])
    logits = probs.log()
    # mass before each token in descending order: 0.5 → 0, 0.3 → 0.5, 0.15 → 0.8, 0.05 → 0.95
    assert torch.isfinite(filter_logits(logits, top_p=0.5)).tolist() == [[True, False, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.8)).tolist() == [[True, False, True, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.81)).tolist() == [[True, False, True, True]]
    assert torch.isfinite(filter_logits(logits, top_p=1.0)).all()


def test_tiny_top_p_is_greedy_even_with_ties():
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0))
    logits[0, 7] = logits[0, 3] = logits[0].max() + 1  # a tie: argmax and top-p both pick id 3
    settings = SamplingSettings(temperature=1.5, top_p=1e-9, seed=1)
    sampled = choose_tokens(logits, settings, settings.generator())
    assert torch.equal(sampled, logits.argmax(-1))
    assert sampled[0] == 3


def test_greedy_is_argmax_and_sampling_is_reproducible():
    logits = torch.randn(16, 100, generator=torch.Generator().manual_seed(1))
    greedy = SamplingSettings()
    assert torch.equal(choose_tokens(logits, greedy, greedy.generator()), logits.argmax(-1))
    hot = SamplingSettings(temperature=2.0, top_k=40, top_p=0.95, seed=5)
    first, second = (choose_tokens(logits, hot, hot.generator()) for _ in range(2))
    assert torch.equal(first, second)
    other = SamplingSettings(temperature=2.0, top_k=40, top_p=0.95, seed=6)
    assert not torch.equal(first, choose_tokens(logits, other, other.generator()))
    assert not torch.equal(first, logits.argmax(-1))  # it really samples at T=2
    # sampled ids come from the top-k set of each row
    kth = torch.topk(logits, 40, dim=-1).values[:, -1]
    assert (logits.gather(1, first[:, None]).squeeze(1) >= kth).all()


@pytest.mark.parametrize("kwargs,message", [
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"vocab_limit": -1}, "vocab_limit"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplingSettings(**kwargs)


def test_ids_past_the_vocab_limit_are_never_chosen():
    """A padded vocabulary (model rows past the tokenizer's pieces) must not be sampled from,
    even when those rows carry the largest logits."""
    logits = torch.tensor([[0.0, 1.0, 2.0, 9.0, 9.0], [3.0, 0.0, 0.0, 0.0, 8.0]])
    assert choose_tokens(logits, SamplingSettings(), torch.Generator()).tolist() == [3, 4]  # unlimited: padding wins
    limited = SamplingSettings(vocab_limit=3)
    assert choose_tokens(logits, limited, torch.Generator()).tolist() == [2, 0]
    hot = SamplingSettings(temperature=5.0, vocab_limit=3, seed=1)
    draws = torch.stack([choose_tokens(logits, hot, hot.generator()) for _ in range(50)])
    assert int(draws.max()) < 3


def test_choose_tokens_wants_batch_by_vocab():
    with pytest.raises(ValueError, match=r"\[batch, vocab\]"):
        choose_tokens(torch.zeros(2, 1, 5), SamplingSettings(), torch.Generator())


def test_attention_mask_hides_pads_and_the_future():
    pads = torch.tensor([0, 2])
    prefill = attention_mask(pads, 0, 4)  # True = masked out
    assert prefill.shape == (2, 1, 4, 4)
    allowed = ~prefill[:, 0]
    assert torch.equal(allowed[0], torch.ones(4, 4, dtype=torch.bool).tril())
    # row 1: slots 0, 1 are pads (each sees only itself); real slots 2, 3 see only real slots
    assert allowed[1].tolist() == [[True, False, False, False], [False, True, False, False],
                                   [False, False, True, False], [False, False, True, True]]
    decode = ~attention_mask(pads, 4, 5)[:, 0]  # one query (slot 4) over the whole cache
    assert decode.tolist() == [[[True] * 5], [[False, False, True, True, True]]]


def test_generate_refuses_interleaved_chunks():
    from megatron_kanana.mcore.generate import generate

    with pytest.raises(NotImplementedError, match="virtual_pipeline_model_parallel_size"):
        generate([torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)], [[1, 2]], 4)


def test_repetition_penalty_equals_the_hf_processor():
    from transformers import RepetitionPenaltyLogitsProcessor

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 40, generator=g) * 3
    rows = [[1, 5, 5, 39], [0], [7, 2, 30, 31, 2]]
    for penalty in (1.3, 0.7):
        ours = penalize_repeats(logits, seen_ids(rows, 40), penalty)
        theirs = torch.cat([RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([r]), logits[i:i + 1].clone())
                            for i, r in enumerate(rows)])
        assert torch.equal(ours, theirs), penalty
    assert torch.equal(penalize_repeats(logits, seen_ids(rows, 40), 1.0), logits)


def test_repetition_penalty_changes_the_greedy_choice_and_needs_the_seen_ids():
    logits = torch.tensor([[2.0, 1.5, -1.0]])
    settings = SamplingSettings(repetition_penalty=2.0)
    assert choose_tokens(logits, SamplingSettings(), torch.Generator()).tolist() == [0]
    assert choose_tokens(logits, settings, torch.Generator(), seen_ids([[0]], 3)).tolist() == [1]  # 2/2 < 1.5
    with pytest.raises(ValueError, match="repetition_penalty needs the seen ids"):
        choose_tokens(logits, settings, torch.Generator())
    with pytest.raises(ValueError, match="repetition_penalty must be > 0"):
        SamplingSettings(repetition_penalty=0.0)
