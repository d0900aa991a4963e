"""The distillation forward step handed to megatron's schedules (a `distill` section is set).

Loss = kl_weight · T²·KL(teacher ‖ student) + lm_loss_weight · (CE + z-loss), on
the final vocab-parallel logits of the paired stages (mcore/distill.py). The
loss dict always reports the student's own "lm loss", so validation during
distillation reads the same number as in pre-training.

Two paths, chosen by `kernels.lm_head_loss` as for pre-training:
- fused (default): both models' last stages return final hidden states and
  kanana_kernels.fused_linear_kl_div / fused_linear_cross_entropy compute KL and
  CE from them and the two vocab-sharded output weights in token chunks, so
  neither [tokens, V/tp] logits tensor is ever held whole (at 128k vocabulary and
  8,192 tokens each would be ~4 GB in fp32);
- unfused: megatron's output layers produce both logits tensors and
  mcore.loss.vocab_parallel_kl_div / lm_loss_with_z reduce them.
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.fused_head import fused_lm_loss_with_z, fused_vocab_parallel_kl_div, output_weight
from megatron_kanana.mcore.loss import lm_loss_with_z, vocab_parallel_kl_div
from megatron_kanana.training.distill_config import DistillConfig
from megatron_kanana.training.kernels_config import KernelsConfig

LOSS_KEY = "distill loss"
EXTRA_KEYS = ("lm loss", "kl loss", "z loss")


def make_distill_forward_step(distill: DistillConfig, z_loss_coef: float, kernels: KernelsConfig | None = None):
    """`kernels`: the section both models were built with (None: unfused, logits out)."""
    fused = kernels is not None and kernels.fused_lm_head

    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        output = model(tokens, position_ids, None)
        if not isinstance(output, tuple):  # not the last stage: both residual streams, concatenated
            return output, None
        student_out, teacher_out = output
        labels, loss_mask = batch["labels"].to(device), batch["loss_mask"].to(device)
        if fused:
            loss = partial(_fused_loss, distill, z_loss_coef, kernels, model, teacher_out, labels, loss_mask)
        else:
            loss = partial(_loss, distill, z_loss_coef, teacher_out, labels, loss_mask)
        return student_out, loss

    return forward_step


def _loss(distill: DistillConfig, z_loss_coef: float, teacher_logits: torch.Tensor, labels: torch.Tensor,
          loss_mask: torch.Tensor, student_logits: torch.Tensor):
    kl = vocab_parallel_kl_div(student_logits, teacher_logits, loss_mask, distill.temperature)
    with torch.set_grad_enabled(torch.is_grad_enabled() and distill.lm_loss_weight > 0):
        lm_total, ce, z = lm_loss_with_z(student_logits, labels, loss_mask, z_loss_coef)
    return _combine(distill, kl, lm_total, ce, z)


def _fused_loss(distill: DistillConfig, z_loss_coef: float, kernels: KernelsConfig, stage: torch.nn.Module,
                teacher_hidden: torch.Tensor, labels: torch.Tensor, loss_mask: torch.Tensor,
                student_hidden: torch.Tensor):
    student_weight, teacher_weight = output_weight(stage.student), output_weight(stage.teacher)
    chunking = {"chunk_size": kernels.lm_head_chunk_size, "impl": kernels.lm_head_impl}
    kl = fused_vocab_parallel_kl_div(student_hidden, student_weight, teacher_hidden, teacher_weight.detach(),
                                     loss_mask, distill.temperature, **chunking)
    with torch.set_grad_enabled(torch.is_grad_enabled() and distill.lm_loss_weight > 0):
        lm_total, ce, z = fused_lm_loss_with_z(student_hidden, student_weight, labels, loss_mask, z_loss_coef,
                                               **chunking)
    return _combine(distill, kl, lm_total, ce, z)


def _combine(distill: DistillConfig, kl, lm_total, ce, z):
    total = distill.kl_weight * kl
    if distill.lm_loss_weight:
        total = total + distill.lm_loss_weight * lm_total
    # clone: megatron's schedule divides the returned loss in place by the micro-batch count
    return total, {LOSS_KEY: total.detach().clone(), "lm loss": ce.detach().clone(),
                   "kl loss": kl.detach().clone(), "z loss": z.detach().clone()}
