"""The distillation forward step handed to megatron's schedules (a `distill` section is set).

Loss = kl_weight · T²·KL(teacher ‖ student) + lm_loss_weight · (CE + z-loss), on
the final, vocab-parallel logits of the paired stages (mcore/distill.py). The
loss dict always reports the student's own "lm loss", so validation during
distillation reads the same number as in pre-training.

Memory: both models' full-vocabulary logits for one micro-batch exist at once
(split over TP). kanana_kernels.fused_linear_kl_div computes the same KL from the
hidden states in vocabulary chunks without materialising logits; it is the path
for 128k vocabularies at long sequence length (not wired in yet).
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.loss import lm_loss_with_z, vocab_parallel_kl_div
from megatron_kanana.training.distill_config import DistillConfig

LOSS_KEY = "distill loss"
EXTRA_KEYS = ("lm loss", "kl loss", "z loss")


def make_distill_forward_step(distill: DistillConfig, z_loss_coef: float):
    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        output = model(tokens, position_ids, None)
        if not isinstance(output, tuple):  # not the last stage: both residual streams, concatenated
            return output, None
        student_logits, teacher_logits = output
        return student_logits, partial(_loss, distill, z_loss_coef, teacher_logits,
                                       batch["labels"].to(device), batch["loss_mask"].to(device))

    return forward_step


def _loss(distill: DistillConfig, z_loss_coef: float, teacher_logits: torch.Tensor, labels: torch.Tensor,
          loss_mask: torch.Tensor, student_logits: torch.Tensor):
    kl = vocab_parallel_kl_div(student_logits, teacher_logits, loss_mask, distill.temperature)
    with torch.set_grad_enabled(torch.is_grad_enabled() and distill.lm_loss_weight > 0):
        lm_total, ce, z = lm_loss_with_z(student_logits, labels, loss_mask, z_loss_coef)
    total = distill.kl_weight * kl
    if distill.lm_loss_weight:
        total = total + distill.lm_loss_weight * lm_total
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    return total, {LOSS_KEY: total.detach().clone(), "lm loss": ce.detach().clone(),
                   "kl loss": kl.detach().clone(), "z loss": z.detach().clone()}
