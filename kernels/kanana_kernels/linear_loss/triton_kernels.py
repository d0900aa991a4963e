"""Per-chunk softmax statistics and logit gradients as Triton kernels.

Same four functions and semantics as chunk_ops.py. One program owns one token
row and walks its vocab shard in blocks with an online max / sum-exp, so a row
is read once for the statistics and once for the gradient, which is written in
place over the logits (the matmuls around them stay in cuBLAS, as in Liger-Kernel).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kanana_kernels.dispatch import block_size, ensure_launchable

_BLOCK_V_CAP = 4096
_NUM_WARPS = 8  # a 4096-wide fp32 block over 256 threads: 16 values per thread per live tensor


@triton.jit
def _ce_stats_kernel(x_ptr, labels_ptr, m_ptr, se_ptr, tgt_ptr, n_vocab, v_start, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * n_vocab
    m = float("-inf")
    se = 0.0
    for start in range(0, n_vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(x_row + cols, mask=cols < n_vocab, other=float("-inf")).to(tl.float32)
        new_m = tl.maximum(m, tl.max(x, axis=0))
        se = se * tl.exp(m - new_m) + tl.sum(tl.exp(x - new_m), axis=0)
        m = new_m
    local = tl.load(labels_ptr + row) - v_start
    in_shard = (local >= 0) & (local < n_vocab)
    tgt = tl.load(x_row + tl.where(in_shard, local, 0)).to(tl.float32)
    tl.store(m_ptr + row, m)
    tl.store(se_ptr + row, se)
    tl.store(tgt_ptr + row, tl.where(in_shard, tgt, 0.0))


@triton.jit
def _ce_grad_kernel(x_ptr, labels_ptr, lse_ptr, g_loss_ptr, g_z_ptr, z_loss_coef, n_vocab, v_start,
                    BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    x_row = x_ptr + row * n_vocab
    lse = tl.load(lse_ptr + row)
    g = tl.load(g_loss_ptr + row)
    p_scale = g + 2.0 * z_loss_coef * lse * tl.load(g_z_ptr + row)
    local = tl.load(labels_ptr + row) - v_start
    for start in range(0, n_vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < n_vocab
        x = tl.load(x_row + cols, mask=mask, other=0.0).to(tl.float32)
        d = p_scale * tl.exp(x - lse) - tl.where(cols == local, g, 0.0)
        tl.store(x_row + cols, d.to(x_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _kl_stats_kernel(t_ptr, s_ptr, m_t_ptr, se_t_ptr, a_ptr, m_s_ptr, se_s_ptr, n_vocab, inv_temp,
                     BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    m_t = float("-inf")
    m_s = float("-inf")
    se_t = 0.0
    se_s = 0.0
    a = 0.0
    for start in range(0, n_vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < n_vocab
        t = tl.load(t_ptr + row * n_vocab + cols, mask=mask, other=0.0).to(tl.float32) * inv_temp
        s = tl.load(s_ptr + row * n_vocab + cols, mask=mask, other=0.0).to(tl.float32) * inv_temp
        t_m = tl.where(mask, t, float("-inf"))
        s_m = tl.where(mask, s, float("-inf"))
        new_t = tl.maximum(m_t, tl.max(t_m, axis=0))
        new_s = tl.maximum(m_s, tl.max(s_m, axis=0))
        e_t = tl.exp(t_m - new_t)
        rescale_t = tl.exp(m_t - new_t)
        se_t = se_t * rescale_t + tl.sum(e_t, axis=0)
        a = a * rescale_t + tl.sum(tl.where(mask, e_t * (t - s), 0.0), axis=0)
        se_s = se_s * tl.exp(m_s - new_s) + tl.sum(tl.exp(s_m - new_s), axis=0)
        m_t = new_t
        m_s = new_s
    tl.store(m_t_ptr + row, m_t)
    tl.store(se_t_ptr + row, se_t)
    tl.store(a_ptr + row, a)
    tl.store(m_s_ptr + row, m_s)
    tl.store(se_s_ptr + row, se_s)


@triton.jit
def _kl_grad_kernel(t_ptr, s_ptr, lse_t_ptr, lse_s_ptr, scale_ptr, n_vocab, inv_temp, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    lse_t = tl.load(lse_t_ptr + row)
    lse_s = tl.load(lse_s_ptr + row)
    scale = tl.load(scale_ptr + row)
    for start in range(0, n_vocab, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        mask = cols < n_vocab
        t = tl.load(t_ptr + row * n_vocab + cols, mask=mask, other=0.0).to(tl.float32) * inv_temp
        s = tl.load(s_ptr + row * n_vocab + cols, mask=mask, other=0.0).to(tl.float32) * inv_temp
        d = scale * (tl.exp(s - lse_s) - tl.exp(t - lse_t))
        tl.store(s_ptr + row * n_vocab + cols, d.to(s_ptr.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor, op: str, kernel) -> tuple[int, int]:
    ensure_launchable(kernel, x, op)
    if not x.is_contiguous():
        raise ValueError(f"{op}: logits chunk must be contiguous")
    return x.shape[0], block_size(x.shape[1], _BLOCK_V_CAP)


def ce_stats(logits: torch.Tensor, labels: torch.Tensor, v_start: int):
    rows, block = _rows(logits, "fused_linear_cross_entropy", _ce_stats_kernel)
    m, se, tgt = (torch.empty(rows, dtype=torch.float32, device=logits.device) for _ in range(3))
    _ce_stats_kernel[(rows,)](logits, labels.contiguous(), m, se, tgt, logits.shape[1], v_start,
                              BLOCK_V=block, num_warps=_NUM_WARPS)
    return m, se, tgt


def ce_grad_(logits, labels, lse, g_loss, g_z, z_loss_coef: float, v_start: int) -> torch.Tensor:
    rows, block = _rows(logits, "fused_linear_cross_entropy", _ce_grad_kernel)
    _ce_grad_kernel[(rows,)](logits, labels.contiguous(), lse.contiguous(), g_loss.contiguous(), g_z.contiguous(),
                             z_loss_coef, logits.shape[1], v_start, BLOCK_V=block, num_warps=_NUM_WARPS)
    return logits


def kl_stats(t_logits: torch.Tensor, s_logits: torch.Tensor, inv_temp: float):
    rows, block = _rows(s_logits, "fused_linear_kl_div", _kl_stats_kernel)
    out = [torch.empty(rows, dtype=torch.float32, device=s_logits.device) for _ in range(5)]
    _kl_stats_kernel[(rows,)](t_logits, s_logits, *out, s_logits.shape[1], inv_temp,
                              BLOCK_V=block, num_warps=_NUM_WARPS)
    return tuple(out)


def kl_grad_(t_logits, s_logits, lse_t, lse_s, scale, inv_temp: float) -> torch.Tensor:
    rows, block = _rows(s_logits, "fused_linear_kl_div", _kl_grad_kernel)
    _kl_grad_kernel[(rows,)](t_logits, s_logits, lse_t.contiguous(), lse_s.contiguous(), scale.contiguous(),
                             s_logits.shape[1], inv_temp, BLOCK_V=block, num_warps=_NUM_WARPS)
    return s_logits
