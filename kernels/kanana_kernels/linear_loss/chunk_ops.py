"""Per-chunk softmax statistics and logit gradients in plain PyTorch.

The chunked losses call these on one chunk of logits [chunk, vocab_shard] at a
time; the Triton module provides the same four functions as kernels. Statistics
are local to the vocab shard and combine across shards with an online-softmax
rescale: (m, se) from each shard -> M = max m, SE = sum se * exp(m - M).
"""
from __future__ import annotations

import torch


def _target_mask(labels: torch.Tensor, v_start: int, v_local: int) -> tuple[torch.Tensor, torch.Tensor]:
    local = labels - v_start
    return local.clamp(0, v_local - 1), (local >= 0) & (local < v_local)


def ce_stats(logits: torch.Tensor, labels: torch.Tensor, v_start: int):
    """Local max, sum of exp(x - max) and target logit (0 when the label is in another shard), all fp32 [chunk]."""
    x = logits.float()
    m = x.amax(-1)
    se = torch.exp(x - m[:, None]).sum(-1)
    idx, in_shard = _target_mask(labels, v_start, x.shape[1])
    target = x.gather(1, idx[:, None]).squeeze(1)
    return m, se, torch.where(in_shard, target, 0.0)


def ce_grad_(logits: torch.Tensor, labels: torch.Tensor, lse: torch.Tensor, g_loss: torch.Tensor,
             g_z: torch.Tensor, z_loss_coef: float, v_start: int) -> torch.Tensor:
    """Overwrite logits with d(g_loss·loss + g_z·z_loss)/d logits = (g + 2c·lse·g_z)·p - g·onehot."""
    p = torch.exp(logits.float() - lse[:, None])
    d = p * (g_loss + 2.0 * z_loss_coef * lse * g_z)[:, None]
    idx, in_shard = _target_mask(labels, v_start, logits.shape[1])
    d.scatter_add_(1, idx[:, None], -(g_loss * in_shard)[:, None])
    return logits.copy_(d)


def kl_stats(t_logits: torch.Tensor, s_logits: torch.Tensor, inv_temp: float):
    """Local (m_t, se_t, a, m_s, se_s) with a = sum exp(t - m_t)·(t - s), logits scaled by 1/T; fp32 [chunk]."""
    t = t_logits.float() * inv_temp
    s = s_logits.float() * inv_temp
    m_t, m_s = t.amax(-1), s.amax(-1)
    e_t = torch.exp(t - m_t[:, None])
    return m_t, e_t.sum(-1), (e_t * (t - s)).sum(-1), m_s, torch.exp(s - m_s[:, None]).sum(-1)


def kl_grad_(t_logits: torch.Tensor, s_logits: torch.Tensor, lse_t: torch.Tensor, lse_s: torch.Tensor,
             scale: torch.Tensor, inv_temp: float) -> torch.Tensor:
    """Overwrite student logits with scale·(p_s - p_t), the KL gradient (scale = upstream grad × T)."""
    p_s = torch.exp(s_logits.float() * inv_temp - lse_s[:, None])
    p_t = torch.exp(t_logits.float() * inv_temp - lse_t[:, None])
    return s_logits.copy_(scale[:, None] * (p_s - p_t))
