"""Output-layer losses computed from hidden states: the dispatch points.

`fused_linear_cross_entropy` (language-model loss plus z-loss) and
`fused_linear_kl_div` (distillation KL from a frozen teacher) take hidden states
and the output weight (this rank's vocab shard under tensor parallelism) and
return per-token values. impl: "auto" (Triton chunked on CUDA, else the
reference), "triton" (chunked, Triton per-chunk kernels), "chunked" (chunked,
PyTorch per-chunk math: bounded memory without Triton) or "torch" (reference,
full logits).
"""
from __future__ import annotations

import torch

from kanana_kernels.dispatch import resolve_impl
from kanana_kernels.linear_loss.chunked import LinearCrossEntropyFunction, LinearKLDivFunction
from kanana_kernels.linear_loss.reference import linear_cross_entropy_reference, linear_kl_div_reference
from kanana_kernels.tensor_parallel import group_rank_and_size

IMPLS = ("auto", "triton", "chunked", "torch")
DEFAULT_CHUNK_SIZE = 1024


def _chunk_ops(impl: str):
    if impl == "triton":
        from kanana_kernels.linear_loss import triton_kernels

        return triton_kernels
    from kanana_kernels.linear_loss import chunk_ops

    return chunk_ops


def _check_linear(op: str, hidden: torch.Tensor, weight: torch.Tensor, name: str) -> None:
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: {name} hidden must be [tokens, hidden] and weight [vocab_shard, hidden]; "
                         f"got {tuple(hidden.shape)} and {tuple(weight.shape)}")
    if hidden.dtype != weight.dtype or hidden.device != weight.device:
        raise ValueError(f"{op}: {name} hidden and weight differ in dtype/device: "
                         f"{hidden.dtype}/{hidden.device} vs {weight.dtype}/{weight.device}")


def _check_chunk(op: str, chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"{op}: chunk_size must be a positive int, got {chunk_size!r}")


def fused_linear_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *,
                               z_loss_coef: float = 0.0, ignore_index: int = -100,
                               chunk_size: int = DEFAULT_CHUNK_SIZE, tp_group=None,
                               impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (cross-entropy, z_loss = coef · logsumexp²), both [tokens] fp32, 0 at ignore_index.

    hidden [tokens, hidden] is replicated across `tp_group`; weight is this rank's
    vocab shard [vocab / tp, hidden]; labels [tokens] hold global vocabulary ids.
    """
    op = "fused_linear_cross_entropy"
    _check_linear(op, hidden, weight, "")
    _check_chunk(op, chunk_size)
    if labels.shape != (hidden.shape[0],) or labels.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"{op}: labels must be an integer tensor [tokens] = [{hidden.shape[0]}], "
                         f"got {labels.dtype} {tuple(labels.shape)}")
    if z_loss_coef < 0:
        raise ValueError(f"{op}: z_loss_coef must be >= 0, got {z_loss_coef}")
    _, tp = group_rank_and_size(tp_group)
    vocab = weight.shape[0] * tp
    real = labels[labels != ignore_index]
    if real.numel() and (int(real.min()) < 0 or int(real.max()) >= vocab):
        raise ValueError(f"{op}: labels must lie in [0, {vocab}) or equal ignore_index={ignore_index}; "
                         f"got range [{int(real.min())}, {int(real.max())}]")
    labels = labels.long()
    impl = resolve_impl(impl, hidden, op, IMPLS)
    if impl == "torch":
        return linear_cross_entropy_reference(hidden, weight, labels, z_loss_coef, ignore_index, tp_group)
    return LinearCrossEntropyFunction.apply(hidden, weight, labels, float(z_loss_coef), ignore_index,
                                            chunk_size, tp_group, _chunk_ops(impl))


def fused_linear_kl_div(student_hidden: torch.Tensor, student_weight: torch.Tensor,
                        teacher_hidden: torch.Tensor, teacher_weight: torch.Tensor, *,
                        temperature: float = 1.0, chunk_size: int = DEFAULT_CHUNK_SIZE, tp_group=None,
                        impl: str = "auto") -> torch.Tensor:
    """Per-token T² · KL(teacher ‖ student) at temperature T, [tokens] fp32; gradient to the student only.

    Both weights are vocab shards over the same `tp_group` (same vocab split);
    teacher and student hidden sizes may differ.
    """
    op = "fused_linear_kl_div"
    _check_linear(op, student_hidden, student_weight, "student")
    _check_linear(op, teacher_hidden, teacher_weight, "teacher")
    _check_chunk(op, chunk_size)
    if teacher_hidden.shape[0] != student_hidden.shape[0] or teacher_weight.shape[0] != student_weight.shape[0]:
        raise ValueError(f"{op}: teacher and student must have the same tokens and vocab shard; got "
                         f"{tuple(teacher_hidden.shape)}/{tuple(teacher_weight.shape)} vs "
                         f"{tuple(student_hidden.shape)}/{tuple(student_weight.shape)}")
    if teacher_hidden.requires_grad or teacher_weight.requires_grad:
        raise ValueError(f"{op}: the teacher is frozen and gets no gradient; pass detached teacher tensors")
    if not temperature > 0:
        raise ValueError(f"{op}: temperature must be > 0, got {temperature}")
    impl = resolve_impl(impl, student_hidden, op, IMPLS)
    if impl == "torch":
        return linear_kl_div_reference(student_hidden, student_weight, teacher_hidden, teacher_weight,
                                       temperature, tp_group)
    return LinearKLDivFunction.apply(student_hidden, student_weight, teacher_hidden, teacher_weight,
                                     float(temperature), chunk_size, tp_group, _chunk_ops(impl))
