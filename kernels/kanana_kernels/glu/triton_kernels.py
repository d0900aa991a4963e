"""SwiGLU (silu(gate) * up over a concatenated [gate; up] input) in Triton, forward and backward."""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kanana_kernels.dispatch import block_size, ensure_launchable

_BLOCK_CAP = 1024


@triton.jit
def _swiglu_fwd(x_ptr, y_ptr, n_half, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_half
    gate = tl.load(x_ptr + row * 2 * n_half + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * 2 * n_half + n_half + cols, mask=mask, other=0.0).to(tl.float32)
    y = gate * tl.sigmoid(gate) * up
    tl.store(y_ptr + row * n_half + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd(x_ptr, dy_ptr, dx_ptr, n_half, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_half
    gate_offs = row * 2 * n_half + cols
    gate = tl.load(x_ptr + gate_offs, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + gate_offs + n_half, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + row * n_half + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(gate)
    silu = gate * sig
    # d silu(g)/dg = sig(g) * (1 + g * (1 - sig(g)))
    d_gate = dy * up * sig * (1.0 + gate * (1.0 - sig))
    tl.store(dx_ptr + gate_offs, d_gate.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dx_ptr + gate_offs + n_half, (dy * silu).to(dx_ptr.dtype.element_ty), mask=mask)


class SwiGLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, fc1_out):
        ensure_launchable(_swiglu_fwd, fc1_out, "swiglu")
        n_half = fc1_out.shape[-1] // 2
        x2 = fc1_out.reshape(-1, 2 * n_half).contiguous()
        y = torch.empty(x2.shape[0], n_half, dtype=x2.dtype, device=x2.device)
        block = block_size(n_half, _BLOCK_CAP)
        _swiglu_fwd[(x2.shape[0], triton.cdiv(n_half, block))](x2, y, n_half, BLOCK=block)
        ctx.save_for_backward(x2)
        ctx.in_shape = fc1_out.shape
        return y.view(*fc1_out.shape[:-1], n_half)

    @staticmethod
    def backward(ctx, dy):
        (x2,) = ctx.saved_tensors
        n_half = x2.shape[1] // 2
        dy2 = dy.reshape(-1, n_half).contiguous()
        dx = torch.empty_like(x2)
        block = block_size(n_half, _BLOCK_CAP)
        _swiglu_bwd[(x2.shape[0], triton.cdiv(n_half, block))](x2, dy2, dx, n_half, BLOCK=block)
        return dx.view(ctx.in_shape)
