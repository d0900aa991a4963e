"""Cross-entropy and KL distillation from hidden states without materialising the logits.

Tokens are processed in chunks: a chunk's logits [chunk, vocab_shard] come from
one matmul, per-row statistics are taken from them, and they are dropped. The
per-row statistics of all chunks are combined across the tensor-parallel group
at the end with one MAX and one SUM all-reduce. The backward recomputes each
chunk's logits, turns them into logit gradients in place and multiplies them
out into grad_hidden and grad_weight. Recomputing costs one extra matmul per
chunk but keeps the per-token outputs general: any upstream gradient (a loss
mask, a mean over a different count) is handled exactly, which Liger's approach
(gradients computed in the forward for a known scalar reduction) cannot do.

grad_hidden is all-reduced over the group here, because every rank's shard
contributes to it: callers must not also wrap the input in megatron's
copy_to_tensor_model_parallel_region.
"""
from __future__ import annotations

import torch
import torch.distributed as dist

from kanana_kernels.tensor_parallel import all_reduce_, group_rank_and_size


def _combine(maxes: list[torch.Tensor], sums_per_max: list[list[torch.Tensor]], extra: list[torch.Tensor], group):
    """All-reduce shard-local online-softmax statistics: rescale each sum to the global max, then add."""
    local_max = torch.stack(maxes)
    global_max = all_reduce_(local_max.clone(), group, dist.ReduceOp.MAX)
    rescaled = [s * torch.exp(local_max[i] - global_max[i]) for i, sums in enumerate(sums_per_max) for s in sums]
    summed = all_reduce_(torch.stack(rescaled + extra), group)
    return global_max, summed


def _grad_weight_buffer(weight: torch.Tensor) -> torch.Tensor:
    # Accumulated across chunks with addmm_ in the weight's dtype (as Liger does); for bf16
    # that adds one rounding per chunk, which the tests' bf16 tolerance covers.
    return torch.zeros_like(weight)


class LinearCrossEntropyFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, labels, z_loss_coef, ignore_index, chunk_size, group, ops):
        rank, _ = group_rank_and_size(group)
        v_start = rank * weight.shape[0]
        stats = [torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device) for _ in range(3)]
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            logits = hidden[start:end] @ weight.t()
            for buf, value in zip(stats, ops.ce_stats(logits, labels[start:end], v_start)):
                buf[start:end] = value
            del logits
        m, (se, target) = _combine([stats[0]], [[stats[1]]], [stats[2]], group)
        lse = m[0] + se.log()
        valid = labels != ignore_index
        ctx.save_for_backward(hidden, weight, labels, lse, valid)
        ctx.args = (z_loss_coef, chunk_size, group, ops, v_start)
        return torch.where(valid, lse - target, 0.0), torch.where(valid, z_loss_coef * lse.square(), 0.0)

    @staticmethod
    def backward(ctx, g_loss, g_z):
        hidden, weight, labels, lse, valid = ctx.saved_tensors
        z_loss_coef, chunk_size, group, ops, v_start = ctx.args
        g_loss = torch.zeros_like(lse) if g_loss is None else g_loss.float() * valid
        g_z = torch.zeros_like(lse) if g_z is None else g_z.float() * valid
        grad_hidden = torch.empty(hidden.shape, dtype=hidden.dtype, device=hidden.device)
        grad_weight = _grad_weight_buffer(weight)
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            h = hidden[start:end]
            dlogits = ops.ce_grad_(h @ weight.t(), labels[start:end], lse[start:end], g_loss[start:end],
                                   g_z[start:end], z_loss_coef, v_start)
            torch.matmul(dlogits, weight, out=grad_hidden[start:end])
            grad_weight.addmm_(dlogits.t(), h)
            del dlogits
        all_reduce_(grad_hidden, group)
        return grad_hidden, grad_weight, None, None, None, None, None, None


class LinearKLDivFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, s_hidden, s_weight, t_hidden, t_weight, temperature, chunk_size, group, ops):
        inv_temp = 1.0 / temperature
        stats = [torch.empty(s_hidden.shape[0], dtype=torch.float32, device=s_hidden.device) for _ in range(5)]
        for start in range(0, s_hidden.shape[0], chunk_size):
            end = min(start + chunk_size, s_hidden.shape[0])
            t_logits = t_hidden[start:end] @ t_weight.t()
            s_logits = s_hidden[start:end] @ s_weight.t()
            for buf, value in zip(stats, ops.kl_stats(t_logits, s_logits, inv_temp)):
                buf[start:end] = value
            del t_logits, s_logits
        m_t, se_t, a, m_s, se_s = stats
        maxes, (se_t, a, se_s) = _combine([m_t, m_s], [[se_t, a], [se_s]], [], group)
        lse_t, lse_s = maxes[0] + se_t.log(), maxes[1] + se_s.log()
        ctx.save_for_backward(s_hidden, s_weight, t_hidden, t_weight, lse_t, lse_s)
        ctx.args = (temperature, chunk_size, group, ops)
        return (a / se_t - lse_t + lse_s) * temperature ** 2

    @staticmethod
    def backward(ctx, g_kl):
        s_hidden, s_weight, t_hidden, t_weight, lse_t, lse_s = ctx.saved_tensors
        temperature, chunk_size, group, ops = ctx.args
        # d(T² · KL)/d student_logit = T² · (p_s - p_t) / T
        scale = g_kl.float() * temperature
        grad_hidden = torch.empty(s_hidden.shape, dtype=s_hidden.dtype, device=s_hidden.device)
        grad_weight = _grad_weight_buffer(s_weight)
        for start in range(0, s_hidden.shape[0], chunk_size):
            end = min(start + chunk_size, s_hidden.shape[0])
            h = s_hidden[start:end]
            t_logits = t_hidden[start:end] @ t_weight.t()
            dlogits = ops.kl_grad_(t_logits, h @ s_weight.t(), lse_t[start:end], lse_s[start:end],
                                   scale[start:end], 1.0 / temperature)
            del t_logits
            torch.matmul(dlogits, s_weight, out=grad_hidden[start:end])
            grad_weight.addmm_(dlogits.t(), h)
            del dlogits
        all_reduce_(grad_hidden, group)
        return grad_hidden, grad_weight, None, None, None, None, None, None
