"""The language-model forward step handed to megatron's pipeline schedules."""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.loss import lm_loss_with_z


def make_forward_step(z_loss_coef: float):
    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        logits = model(tokens, position_ids, None)  # last stage: vocab-parallel logits [b, s, V/tp]
        return logits, partial(lm_loss_output, batch["labels"].to(device), batch["loss_mask"].to(device), z_loss_coef)

    return forward_step


def lm_loss_output(labels: torch.Tensor, loss_mask: torch.Tensor, z_loss_coef: float, logits: torch.Tensor):
    """What a forward step's loss function returns for the masked LM loss (also SFT's)."""
    total, ce, z = lm_loss_with_z(logits, labels, loss_mask, z_loss_coef)
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    return total, {"lm loss": ce.detach().clone(), "z loss": z.detach().clone()}
