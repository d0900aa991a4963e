"""The DPO objective on per-row sequence log-probabilities (pure torch, no parallelism).

Rows come in pairs: row 2j is pair j's chosen response, row 2j+1 its rejected one
(posttrain/preference.py's `collate_pairs`). With π and ref the summed log-probs of
the response tokens under the policy and the frozen reference,

    h_j   = (π_c − ref_c) − (π_r − ref_r)
    loss  = mean_j [ −(1 − ε) log σ(β h_j) − ε log σ(−β h_j) ]  +  λ · NLL(chosen)

(Rafailov et al., 2023; ε > 0 is the "conservative DPO" label smoothing that treats a
fraction ε of the preference labels as flipped; λ > 0 mixes in the mean per-token NLL
of the chosen responses, an SFT term that keeps the chosen likelihood from falling.)
The implicit rewards β(π − ref) and their margin are logged, as is the fraction of
pairs with a positive margin ("preference accuracy").
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

LOSS_KEY = "total loss"
STAT_KEYS = ("dpo loss", "sft loss", "reward margin", "chosen reward", "rejected reward", "preference accuracy")


def split_pairs(rows: torch.Tensor, what: str = "rows") -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) halves of a [2b] tensor laid out chosen, rejected, chosen, ..."""
    if rows.dim() != 1 or rows.shape[0] % 2:
        raise ValueError(f"{what}: expected a 1-d tensor of 2·pairs rows, got shape {tuple(rows.shape)}")
    return rows[0::2], rows[1::2]


def dpo_loss(policy_logps: torch.Tensor, reference_logps: torch.Tensor, num_tokens: torch.Tensor, beta: float,
             label_smoothing: float = 0.0, sft_weight: float = 0.0,
             pair_weight: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(loss to minimise, detached statistics keyed by STAT_KEYS) for one micro-batch of pairs.

    policy_logps, reference_logps: [2b] summed response log-probs; num_tokens: [2b]
    response tokens per row (the loss mask's row sums), for the SFT term's mean.
    pair_weight: optional [2b] row weights, equal within a pair (online DPO gives 0 to a
    prompt whose sampled extremes tie); means are over the weighted pairs."""
    if policy_logps.shape != reference_logps.shape or policy_logps.shape != num_tokens.shape:
        raise ValueError(f"policy {tuple(policy_logps.shape)}, reference {tuple(reference_logps.shape)} and "
                         f"num_tokens {tuple(num_tokens.shape)} must have one shape")
    pi_c, pi_r = split_pairs(policy_logps.float(), "policy_logps")
    ref_c, ref_r = split_pairs(reference_logps.detach().float(), "reference_logps")
    w = torch.ones_like(pi_c) if pair_weight is None else split_pairs(pair_weight.float(), "pair_weight")[0]
    pairs = w.sum().clamp(min=1.0)

    def mean(x: torch.Tensor) -> torch.Tensor:
        return (x * w).sum() / pairs

    chosen_reward, rejected_reward = beta * (pi_c - ref_c), beta * (pi_r - ref_r)
    margin = chosen_reward - rejected_reward
    dpo = mean(-(1.0 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin))
    chosen_tokens = (split_pairs(num_tokens.float(), "num_tokens")[0] * w).sum().clamp(min=1.0)
    sft = -(pi_c * w).sum() / chosen_tokens
    total = dpo + sft_weight * sft if sft_weight else dpo
    stats = {"dpo loss": dpo, "sft loss": sft, "reward margin": mean(margin), "chosen reward": mean(chosen_reward),
             "rejected reward": mean(rejected_reward), "preference accuracy": mean((margin > 0).float())}
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    stats = {k: v.detach().clone() for k, v in stats.items()}
    stats[LOSS_KEY] = total.detach().clone()
    return total, stats
