"""The language-model forward step with the fused LM head (output layer + CE + z-loss in one kernel).

Mirrors training/lm_step.py (same arguments to megatron's schedules, same loss
contract) for models built with `kernels.lm_head_loss: fused`, whose last stage
returns the final hidden states instead of logits. `select_forward_step` picks
this one or lm_step's from the kernels section.
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.fused_head import fused_lm_loss_with_z, output_weight
from megatron_kanana.training import lm_step
from megatron_kanana.training.kernels_config import KernelsConfig


def make_forward_step(z_loss_coef: float, chunk_size: int = 1024, impl: str = "auto"):
    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        hidden = model(tokens, position_ids, None)  # last stage: final hidden states [b, s, h]
        # megatron's schedule calls the loss on the last pipeline stage only
        loss = partial(_loss, model, batch["labels"].to(device), batch["loss_mask"].to(device),
                       z_loss_coef, chunk_size, impl)
        return hidden, loss

    return forward_step


def _loss(model: torch.nn.Module, labels: torch.Tensor, loss_mask: torch.Tensor, z_loss_coef: float,
          chunk_size: int, impl: str, hidden: torch.Tensor):
    total, ce, z = fused_lm_loss_with_z(hidden, output_weight(model), labels, loss_mask, z_loss_coef,
                                        chunk_size=chunk_size, impl=impl)
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    return total, {"lm loss": ce.detach().clone(), "z loss": z.detach().clone()}


def select_forward_step(kernels: KernelsConfig, z_loss_coef: float):
    """The forward step matching how the model was built (build_model(..., kernels=kernels))."""
    if kernels.fused_lm_head:
        return make_forward_step(z_loss_coef, kernels.lm_head_chunk_size, kernels.lm_head_impl)
    return lm_step.make_forward_step(z_loss_coef)
