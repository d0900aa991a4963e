"""Rotary embedding for Q and K in Triton, forward and backward.

A tensor [seq, batch, heads, head_dim] is viewed as [seq, rows, head_dim] with
rows = batch * heads; one program rotates a tile of rows at one position, so the
cos/sin row is loaded once per tile. The backward is the same rotation by the
negative angle (sin negated).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kanana_kernels.dispatch import block_size, ensure_launchable

_ROWS_PER_PROGRAM = 16


@triton.jit
def _rope_kernel(x_ptr, y_ptr, cos_ptr, sin_ptr, n_rows, half, sin_sign,
                 BLOCK_ROWS: tl.constexpr, BLOCK_HALF: tl.constexpr):
    pos = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_HALF)
    col_mask = cols < half
    c = tl.load(cos_ptr + pos * half + cols, mask=col_mask, other=0.0)[None, :]
    s = sin_sign * tl.load(sin_ptr + pos * half + cols, mask=col_mask, other=0.0)[None, :]
    mask = (rows < n_rows)[:, None] & col_mask[None, :]
    offs = (pos * n_rows + rows)[:, None] * (2 * half) + cols[None, :]
    x1 = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + offs + half, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, (x1 * c - x2 * s).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_ptr + offs + half, (x2 * c + x1 * s).to(y_ptr.dtype.element_ty), mask=mask)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sin_sign: float) -> torch.Tensor:
    seq, half = cos.shape
    x3 = x.reshape(seq, -1, 2 * half).contiguous()
    y = torch.empty_like(x3)
    n_rows = x3.shape[1]
    rows_block = block_size(n_rows, _ROWS_PER_PROGRAM)
    grid = (seq, triton.cdiv(n_rows, rows_block))
    _rope_kernel[grid](x3, y, cos, sin, n_rows, half, sin_sign,
                       BLOCK_ROWS=rows_block, BLOCK_HALF=block_size(half, 1024))
    return y.view(x.shape)


class RopeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, cos, sin):
        ensure_launchable(_rope_kernel, q, "apply_rope")
        cos, sin = cos.float().contiguous(), sin.float().contiguous()
        ctx.save_for_backward(cos, sin)
        return _rotate(q, cos, sin, 1.0), _rotate(k, cos, sin, 1.0)

    @staticmethod
    def backward(ctx, dq, dk):
        cos, sin = ctx.saved_tensors
        dq = _rotate(dq, cos, sin, -1.0) if dq is not None else None
        dk = _rotate(dk, cos, sin, -1.0) if dk is not None else None
        return dq, dk, None, None
