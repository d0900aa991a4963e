"""The reward-model forward step handed to megatron's schedules: the Bradley–Terry pairwise loss.

A micro-batch comes from preference.collate_pairs: rows 2j and 2j + 1 are pair j's chosen and
rejected. The model's last stage returns one reward per position (mcore/reward_head.py); each
row's reward is the one at its last real token (index lengths - 1: the last response token;
the end-of-turn token is that position's label, not an input). The loss is
mean_j −log σ(r_chosen_j − r_rejected_j); "accuracy" is the fraction of pairs ranked right and
"margin" the mean r_chosen − r_rejected.
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch
import torch.nn.functional as F

from megatron_kanana.mcore.reward_head import last_token_rewards

LOSS_KEY = "reward loss"
EXTRA_KEYS = ("accuracy", "margin")


def bradley_terry(rewards: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, accuracy, margin) of interleaved rewards [2b] (chosen, rejected, chosen, ...)."""
    if rewards.dim() != 1 or rewards.numel() % 2:
        raise ValueError(f"bradley_terry: expected interleaved rewards of shape [2b], got {tuple(rewards.shape)}")
    diff = rewards[0::2].float() - rewards[1::2].float()
    loss = -F.logsigmoid(diff).mean()  # logsigmoid: stable for large |diff|
    return loss, (diff > 0).float().mean(), diff.mean()


def make_reward_forward_step():
    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        output = model(tokens, position_ids, None)  # last stage: [2b, s, 1] rewards; padding is after, causal
        return output, partial(_loss, batch["lengths"])

    return forward_step


def _loss(lengths: torch.Tensor, output: torch.Tensor):
    loss, accuracy, margin = bradley_terry(last_token_rewards(output, lengths))
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    return loss, {LOSS_KEY: loss.detach().clone(), "accuracy": accuracy.detach(), "margin": margin.detach()}
