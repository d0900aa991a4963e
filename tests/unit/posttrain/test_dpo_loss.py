"""The DPO objective on fixed per-row log-probs equals the formula written out by hand,
pair by pair, with and without the SFT mix and conservative label smoothing."""
import math

import pytest
import torch

from megatron_kanana.posttrain.dpo_loss import LOSS_KEY, dpo_loss

# two pairs: rows (chosen, rejected, chosen, rejected)
POLICY = torch.tensor([-10.0, -14.0, -7.0, -6.0])
REFERENCE = torch.tensor([-12.0, -13.0, -7.5, -6.5])
TOKENS = torch.tensor([4.0, 5.0, 2.0, 3.0])
BETA = 0.5


def by_hand(policy, reference, beta, eps=0.0, sft_weight=0.0):
    def logsig(x):
        return -math.log1p(math.exp(-x))
    margins = [beta * ((policy[2 * j] - reference[2 * j]) - (policy[2 * j + 1] - reference[2 * j + 1]))
               for j in range(len(policy) // 2)]
    dpo = sum(-(1 - eps) * logsig(m) - eps * logsig(-m) for m in margins) / len(margins)
    nll = -(policy[0] + policy[2]) / float(TOKENS[0] + TOKENS[2])
    return dpo + sft_weight * nll, dpo, nll, margins


@pytest.mark.parametrize("eps,sft_weight", [(0.0, 0.0), (0.0, 0.3), (0.1, 0.0), (0.2, 1.0)])
def test_loss_matches_the_formula(eps, sft_weight):
    total, stats = dpo_loss(POLICY, REFERENCE, TOKENS, BETA, label_smoothing=eps, sft_weight=sft_weight)
    want_total, want_dpo, want_nll, margins = by_hand(POLICY.tolist(), REFERENCE.tolist(), BETA, eps, sft_weight)
    assert total.item() == pytest.approx(want_total, rel=1e-6)
    assert stats[LOSS_KEY].item() == pytest.approx(want_total, rel=1e-6)
    assert stats["dpo loss"].item() == pytest.approx(want_dpo, rel=1e-6)
    assert stats["sft loss"].item() == pytest.approx(want_nll, rel=1e-6)
    assert stats["reward margin"].item() == pytest.approx(sum(margins) / 2, rel=1e-6)
    # pair 0: margin 0.5·(2 − (−1)) = 1.5 > 0; pair 1: 0.5·(0.5 − 0.5) = 0, not a win
    assert margins == pytest.approx([1.5, 0.0])
    assert stats["preference accuracy"].item() == 0.5
    assert stats["chosen reward"].item() == pytest.approx(BETA * (2.0 + 0.5) / 2)
    assert stats["rejected reward"].item() == pytest.approx(BETA * (-1.0 + 0.5) / 2)


def test_gradient_only_reaches_the_policy():
    policy = POLICY.clone().requires_grad_(True)
    reference = REFERENCE.clone().requires_grad_(True)
    total, _ = dpo_loss(policy, reference, TOKENS, BETA)
    total.backward()
    assert reference.grad is None
    # d/dπ_c of −log σ(m) = −β σ(−m); the rejected row gets the opposite sign
    m = 1.5
    assert policy.grad[0].item() == pytest.approx(-BETA / (1 + math.exp(m)) / 2, rel=1e-6)
    assert policy.grad[1].item() == pytest.approx(BETA / (1 + math.exp(m)) / 2, rel=1e-6)


def test_statistics_do_not_alias_the_loss():
    total, stats = dpo_loss(POLICY, REFERENCE, TOKENS, BETA)
    total /= 4  # what megatron's schedule does to the returned loss
    assert stats[LOSS_KEY].item() == pytest.approx(4 * total.item())


@pytest.mark.parametrize("policy,reference,tokens,message", [
    (POLICY[:3], REFERENCE[:3], TOKENS[:3], "2·pairs rows"),
    (POLICY, REFERENCE[:2], TOKENS, "must have one shape"),
])
def test_bad_shapes_are_named(policy, reference, tokens, message):
    with pytest.raises(ValueError, match=message):
        dpo_loss(policy, reference, tokens, BETA)


def test_a_zero_weight_pair_counts_for_nothing():
    """Online DPO weights a tied prompt's pair 0: the loss, its gradient and every statistic
    are those of the other pairs alone."""
    policy = POLICY.clone().requires_grad_()
    total, stats = dpo_loss(policy, REFERENCE, TOKENS, BETA, sft_weight=0.3,
                            pair_weight=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    alone, alone_stats = dpo_loss(POLICY[:2], REFERENCE[:2], TOKENS[:2], BETA, sft_weight=0.3)
    assert total.item() == pytest.approx(alone.item(), rel=1e-6)
    for key, value in alone_stats.items():
        assert stats[key].item() == pytest.approx(value.item(), rel=1e-6), key
    total.backward()
    assert policy.grad[2:].abs().max() == 0 and policy.grad[:2].abs().max() > 0
