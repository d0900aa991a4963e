"""Fused LM head: the loss from the final hidden states and the vocab-parallel output weight.

    install_fused_lm_head(model)          # at build time, on every GPTModel chunk
    hidden = model(tokens, position_ids, None)        # last stage: [b, s, h], not logits
    total, ce, z = fused_lm_loss_with_z(hidden, output_weight(model), labels, loss_mask, z_loss_coef)
    with logits_output(chunks): logits = model(tokens, position_ids, None)   # evaluation, generation

GPTModel ends with output_layer (hidden -> [s, b, V/tp] logits). With the fused
head that layer returns its input instead, and `kanana_kernels.
fused_linear_cross_entropy` computes output layer + cross-entropy + z-loss in
vocab chunks, never holding [tokens, V/tp] logits. The output layer keeps its
weight, init and sharded state dict (only its class changes), so checkpoints,
the tied-embedding gradient sync across pipeline stages and the optimizer see
the same parameters as without the fused head.

The kernel all-reduces grad_hidden across the TP group itself: the hidden
states must NOT also go through megatron's copy_to_tensor_model_parallel_region,
which is what ColumnParallelLinear.forward would do; skipping that forward
entirely is what keeps the reduction single.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from kanana_kernels import fused_linear_cross_entropy, fused_linear_kl_div
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.tensor_parallel.layers import ColumnParallelLinear

IGNORE_INDEX = -100


class FusedLMHeadOutputLayer(ColumnParallelLinear):
    """GPTModel's output layer when the loss is fused: holds the weight, returns the hidden states."""

    def forward(self, input_: torch.Tensor, weight=None, runtime_gather_output=None):
        return input_, None


def unwrap(model: torch.nn.Module) -> GPTModel:
    """The GPTModel inside DDP (and any other `.module` wrapper)."""
    while not isinstance(model, GPTModel) and hasattr(model, "module"):
        model = model.module
    if not isinstance(model, GPTModel):
        raise TypeError(f"expected a (wrapped) GPTModel, got {type(model).__name__}")
    return model


def install_fused_lm_head(model: GPTModel) -> None:
    """Make this chunk's output layer return hidden states (a no-op off the last pipeline stage)."""
    if not model.post_process:
        return
    config = model.config
    if config.sequence_parallel:
        raise ValueError("the fused LM head needs the full sequence on every TP rank: set "
                         "kernels.lm_head_loss=unfused with sequence_parallel")
    if config.mtp_num_layers or config.defer_embedding_wgrad_compute:
        raise ValueError("the fused LM head does not support multi-token prediction or deferred embedding "
                         "wgrad: set kernels.lm_head_loss=unfused")
    # Changing the class (not building a new layer) keeps the parameter object, its init
    # and its RNG draws, so fused and unfused runs from one seed start identical.
    model.output_layer.__class__ = FusedLMHeadOutputLayer


def output_weight(model: torch.nn.Module) -> torch.Tensor:
    """This rank's [V/tp, h] output weight: the word embedding when tied on a first+last stage."""
    model = unwrap(model)
    if not model.post_process:
        raise ValueError("output_weight: only the last pipeline stage has the output layer")
    if model.share_embeddings_and_output_weights:
        return model.shared_embedding_or_output_weight()
    return model.output_layer.weight


def _resolve_impl(impl: str, hidden: torch.Tensor) -> str:
    # On CPU, "auto" runs the chunked algorithm with PyTorch math rather than the
    # full-logits reference, so CPU runs exercise the same bounded-memory path as GPU ones.
    if impl == "auto" and not hidden.is_cuda:
        return "chunked"
    return impl


def fused_lm_loss_with_z(hidden_BSH: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                         loss_mask: torch.Tensor, z_loss_coef: float, chunk_size: int = 1024,
                         impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mean cross-entropy, mean z-loss) over the tokens where loss_mask is 1.

    Same contract as mcore.loss.lm_loss_with_z, from hidden states [b, s, h] and
    this rank's vocab shard of the output weight [V/tp, h] instead of logits.
    """
    if hidden_BSH.dim() != 3 or labels.shape != hidden_BSH.shape[:2] or loss_mask.shape != labels.shape:
        raise ValueError(f"fused LM loss: hidden must be [b, s, h] with labels and loss_mask [b, s]; got "
                         f"{tuple(hidden_BSH.shape)}, {tuple(labels.shape)}, {tuple(loss_mask.shape)}")
    tp_group = None
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        tp_group = parallel_state.get_tensor_model_parallel_group()
    mask = loss_mask.reshape(-1).float()
    # masked tokens cost nothing in the kernel and their labels need not be valid ids
    targets = labels.reshape(-1).masked_fill(mask == 0, IGNORE_INDEX)
    hidden = hidden_BSH.reshape(-1, hidden_BSH.shape[-1]).to(weight.dtype)
    ce, z = fused_linear_cross_entropy(hidden, weight, targets, z_loss_coef=z_loss_coef,
                                       ignore_index=IGNORE_INDEX, chunk_size=chunk_size, tp_group=tp_group,
                                       impl=_resolve_impl(impl, hidden))
    denom = mask.sum().clamp(min=1.0)
    ce_mean = (ce * mask).sum() / denom
    z_mean = (z * mask).sum() / denom
    return ce_mean + z_mean, ce_mean, z_mean


def fused_vocab_parallel_kl_div(student_BSH: torch.Tensor, student_weight: torch.Tensor, teacher_BSH: torch.Tensor,
                                teacher_weight: torch.Tensor, loss_mask: torch.Tensor, temperature: float = 1.0,
                                chunk_size: int = 1024, impl: str = "auto") -> torch.Tensor:
    """Mean over masked tokens of T²·KL(teacher ‖ student), from both models' final hidden
    states and vocab-sharded output weights (same contract as mcore.loss.vocab_parallel_kl_div,
    which takes logits). The teacher side must carry no gradient."""
    if student_BSH.shape[:2] != teacher_BSH.shape[:2] or loss_mask.shape != student_BSH.shape[:2]:
        raise ValueError(f"fused KL: student/teacher hidden must be [b, s, h] over the same tokens as loss_mask; "
                         f"got {tuple(student_BSH.shape)}, {tuple(teacher_BSH.shape)}, {tuple(loss_mask.shape)}")
    tp_group = None
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        tp_group = parallel_state.get_tensor_model_parallel_group()
    student = student_BSH.reshape(-1, student_BSH.shape[-1]).to(student_weight.dtype)
    teacher = teacher_BSH.reshape(-1, teacher_BSH.shape[-1]).to(teacher_weight.dtype).detach()
    kl = fused_linear_kl_div(student, student_weight, teacher, teacher_weight, temperature=temperature,
                             chunk_size=chunk_size, tp_group=tp_group, impl=_resolve_impl(impl, student))
    mask = loss_mask.reshape(-1).float()
    return (kl * mask).sum() / mask.sum().clamp(min=1.0)


@contextlib.contextmanager
def logits_output(chunks: list[torch.nn.Module]) -> Iterator[None]:
    """Inside: every fused output layer of `chunks` is megatron's again, so the model returns
    logits (what scoring and generation read). Only the class changes, as at install time:
    the weight, and the tied-embedding path through it, are untouched."""
    swapped = [m.output_layer for m in (unwrap(c) for c in chunks)
               if m.post_process and type(m.output_layer) is FusedLMHeadOutputLayer]
    for layer in swapped:
        layer.__class__ = ColumnParallelLinear
    try:
        yield
    finally:
        for layer in swapped:
            layer.__class__ = FusedLMHeadOutputLayer
