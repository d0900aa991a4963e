"""Cross-entropy and KL distillation losses from hidden states, the straightforward way.

These are the specification for the chunked versions: they build the whole
logits tensor [tokens, vocab_shard] in fp32 (as megatron's vocab-parallel cross
entropy does), so they cost tokens × vocab memory. With a tensor-parallel group
the weight is this rank's vocab shard (rows [rank * V_local, (rank + 1) * V_local));
max, sum-exp and the target logit are all-reduced, megatron-style.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from kanana_kernels.tensor_parallel import all_reduce_, copy_to_group, group_rank_and_size, reduce_from_group


def _vocab_parallel_logsumexp(logits: torch.Tensor, group) -> torch.Tensor:
    # The max only stabilises exp(); detaching it leaves the gradient of lse exact.
    m = all_reduce_(logits.detach().amax(-1), group, dist.ReduceOp.MAX)
    return m + reduce_from_group(torch.exp(logits - m[:, None]).sum(-1), group).log()


def linear_cross_entropy_reference(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                                   z_loss_coef: float = 0.0, ignore_index: int = -100,
                                   tp_group=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token (loss, z_loss), both [tokens] fp32 and zero where labels == ignore_index."""
    rank, _ = group_rank_and_size(tp_group)
    v_local = weight.shape[0]
    logits = (copy_to_group(hidden, tp_group) @ weight.t()).float()
    lse = _vocab_parallel_logsumexp(logits, tp_group)
    local = labels - rank * v_local
    in_shard = (local >= 0) & (local < v_local)
    target = logits.gather(1, local.clamp(0, v_local - 1)[:, None]).squeeze(1)
    target = reduce_from_group(torch.where(in_shard, target, 0.0), tp_group)
    valid = labels != ignore_index
    loss = torch.where(valid, lse - target, 0.0)
    z_loss = torch.where(valid, z_loss_coef * lse.square(), 0.0)
    return loss, z_loss


def linear_kl_div_reference(student_hidden: torch.Tensor, student_weight: torch.Tensor,
                            teacher_hidden: torch.Tensor, teacher_weight: torch.Tensor,
                            temperature: float = 1.0, tp_group=None) -> torch.Tensor:
    """Per-token KL(teacher || student) at temperature T, times T²; [tokens] fp32. Teacher gets no gradient."""
    with torch.no_grad():
        t = (teacher_hidden @ teacher_weight.t()).float() / temperature
        lse_t = _vocab_parallel_logsumexp(t, tp_group)
        p_t = torch.exp(t - lse_t[:, None])
    s = (copy_to_group(student_hidden, tp_group) @ student_weight.t()).float() / temperature
    lse_s = _vocab_parallel_logsumexp(s, tp_group)
    # KL = sum_v p_t (t - s) - lse_t + lse_s; lse_s stays outside the all-reduced sum so its
    # gradient is counted once, not once per shard.
    cross = reduce_from_group((p_t * (t - s)).sum(-1), tp_group)
    return (cross - lse_t + lse_s) * temperature ** 2
