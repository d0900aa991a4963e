"""Vocab-parallel language-model loss with Kanana's z-loss.

The output layer leaves logits split over tensor-parallel ranks along the
vocabulary ([b, s, V/tp]). Cross-entropy and the z-loss both need the log of the
partition function over the *whole* vocabulary; we reduce max and sum-exp
across the TP group instead of gathering logits, then

    ce = logsumexp - logit[target]          z = coef * logsumexp**2

(z-loss, PaLM/Kanana: keeps the softmax normaliser near 1; coefficient 5e-6).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region


def vocab_parallel_max(logits: torch.Tensor) -> torch.Tensor:
    """The vocabulary-wide maximum logit, logits split over TP (fp32, no gradient)."""
    local_max = logits.float().max(dim=-1).values.detach()
    if parallel_state.get_tensor_model_parallel_world_size() > 1:
        dist.all_reduce(local_max, op=dist.ReduceOp.MAX, group=parallel_state.get_tensor_model_parallel_group())
    return local_max


def vocab_parallel_logsumexp(logits: torch.Tensor, max_logit: torch.Tensor | None = None) -> torch.Tensor:
    """logsumexp over the TP-split vocabulary; `max_logit` (vocab_parallel_max's) when the caller
    has it already, which saves a pass over the logits."""
    logits = logits.float()
    top = vocab_parallel_max(logits) if max_logit is None else max_logit
    sum_exp = torch.exp(logits - top.unsqueeze(-1)).sum(dim=-1)
    sum_exp = reduce_from_tensor_model_parallel_region(sum_exp)
    return torch.log(sum_exp) + top


def vocab_parallel_target_logit(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    vocab_local = logits.shape[-1]
    start = parallel_state.get_tensor_model_parallel_rank() * vocab_local
    outside = (target < start) | (target >= start + vocab_local)
    local_target = (target - start).clamp(0, vocab_local - 1)
    picked = logits.float().gather(-1, local_target.unsqueeze(-1)).squeeze(-1)
    picked = picked.masked_fill(outside, 0.0)
    return reduce_from_tensor_model_parallel_region(picked)


def lm_loss_with_z(logits: torch.Tensor, target: torch.Tensor, loss_mask: torch.Tensor,
                   z_loss_coef: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(total, mean cross-entropy, mean z-loss) over the tokens where loss_mask is 1."""
    lse = vocab_parallel_logsumexp(logits)
    ce = lse - vocab_parallel_target_logit(logits, target)
    mask = loss_mask.float()
    denom = mask.sum().clamp(min=1.0)
    ce_mean = (ce * mask).sum() / denom
    z_mean = z_loss_coef * (lse.square() * mask).sum() / denom
    return ce_mean + z_mean, ce_mean, z_mean


def vocab_parallel_kl_div(student_logits: torch.Tensor, teacher_logits: torch.Tensor, loss_mask: torch.Tensor,
                          temperature: float = 1.0) -> torch.Tensor:
    """Mean over masked tokens of T² · KL(softmax(t/T) ‖ softmax(s/T)), logits split over TP ranks.

    KL = Σ_v p_t (log p_t − s_v/T) + logsumexp(s/T), using Σ_v p_t = 1. The
    normalisers come from `vocab_parallel_logsumexp` (max and sum-exp
    all-reduced); the vocabulary sum is this rank's partial sum, all-reduced with
    an identity backward. The student's logsumexp is kept outside that sum on
    purpose: it is already the same on every rank, and inside a per-rank partial
    sum its gradient would be weighted by this rank's share of p_t only (wrong).
    The teacher gets no gradient. T² keeps the gradient's scale independent of T
    (Hinton et al., 2015).
    """
    s = student_logits.float() / temperature
    with torch.no_grad():
        t = teacher_logits.float() / temperature
        t_logp = t - vocab_parallel_logsumexp(t).unsqueeze(-1)
        t_p = t_logp.exp()
    cross = reduce_from_tensor_model_parallel_region((t_p * (t_logp - s)).sum(dim=-1))
    kl = cross + vocab_parallel_logsumexp(s)
    mask = loss_mask.float()
    return temperature ** 2 * (kl * mask).sum() / mask.sum().clamp(min=1.0)


def vocab_parallel_sequence_logprobs(logits: torch.Tensor, labels: torch.Tensor,
                                     loss_mask: torch.Tensor) -> torch.Tensor:
    """Per row, Σ_t loss_mask[t] · log p(labels[t]) from logits [b, s, V/tp]: shape [b], fp32.

    The vocabulary is never gathered: log p(y) = logit[y] − logsumexp over the whole
    vocabulary, both reduced across TP ranks (DPO compares these sums between the
    policy and its reference, pair by pair)."""
    logp = vocab_parallel_target_logit(logits, labels) - vocab_parallel_logsumexp(logits)
    return (logp * loss_mask.float()).sum(dim=-1)
