"""RMSNorm (optionally fused with the residual add) in Triton, forward and backward.

One program normalises one row held whole in registers (hidden up to a few
thousand). The backward splits rows across a fixed number of programs so each
accumulates a partial weight gradient in fp32; the partials are summed in torch.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from kanana_kernels.dispatch import block_size, ensure_launchable

_MAX_HIDDEN = 16384  # a row lives in registers; wider rows would spill


def _num_warps(block: int) -> int:
    return min(max(block // 256, 1), 16)  # about 8 fp32 values per thread


@triton.jit
def _rms_norm_fwd(x_ptr, res_ptr, w_ptr, y_ptr, res_out_ptr, rstd_ptr, n_cols, eps,
                  HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    offs = row * n_cols + cols
    x = tl.load(x_ptr + offs, mask=mask, other=0.0)
    if HAS_RESIDUAL:
        # Add in fp32 and round once to the storage dtype, like torch's bf16 add: this rounded
        # sum is the residual stream, and the norm below reads it (as the reference does).
        res = tl.load(res_ptr + offs, mask=mask, other=0.0)
        x = (x.to(tl.float32) + res.to(tl.float32)).to(x.dtype)
        tl.store(res_out_ptr + offs, x, mask=mask)
    xf = x.to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(xf * xf, axis=0) / n_cols + eps)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, (xf * rstd * w).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(rstd_ptr + row, rstd)


@triton.jit
def _rms_norm_bwd(dy_ptr, dres_out_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_part_ptr,
                  n_rows, n_cols, rows_per_program,
                  HAS_DRES: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros((BLOCK,), dtype=tl.float32)
    row_start = pid * rows_per_program
    row_end = tl.minimum(row_start + rows_per_program, n_rows)
    for row in range(row_start, row_end):
        offs = tl.cast(row, tl.int64) * n_cols + cols
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(rstd_ptr + row)
        x_hat = x * rstd
        wdy = w * dy
        dx = rstd * (wdy - x_hat * (tl.sum(wdy * x_hat, axis=0) / n_cols))
        if HAS_DRES:
            dx += tl.load(dres_out_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
        dw += dy * x_hat
    tl.store(dw_part_ptr + pid * n_cols + cols, dw, mask=mask)


def _num_programs(n_rows: int, device: torch.device) -> int:
    if device.type == "cuda":
        return min(n_rows, 4 * torch.cuda.get_device_properties(device).multi_processor_count)
    return min(n_rows, 4)  # the interpreter runs programs one after another


class RMSNormFunction(torch.autograd.Function):
    """Returns `normed` alone, or `(normed, x + residual)` when a residual is given."""

    @staticmethod
    def forward(ctx, x, weight, residual, eps):
        ensure_launchable(_rms_norm_fwd, x, "rms_norm")
        n_cols = x.shape[-1]
        if n_cols > _MAX_HIDDEN:
            raise ValueError(f"rms_norm: Triton kernel holds a row in registers; hidden {n_cols} > {_MAX_HIDDEN}")
        x2 = x.reshape(-1, n_cols).contiguous()
        res2 = residual.reshape(-1, n_cols).contiguous() if residual is not None else None
        y = torch.empty_like(x2)
        res_out = torch.empty_like(x2) if res2 is not None else None
        rstd = torch.empty(x2.shape[0], dtype=torch.float32, device=x.device)
        block = block_size(n_cols, _MAX_HIDDEN)
        _rms_norm_fwd[(x2.shape[0],)](x2, res2 if res2 is not None else x2, weight.contiguous(), y,
                                      res_out if res_out is not None else y, rstd, n_cols, eps,
                                      HAS_RESIDUAL=res2 is not None, BLOCK=block, num_warps=_num_warps(block))
        normed_input = res_out if res_out is not None else x2
        ctx.save_for_backward(normed_input, weight, rstd)
        ctx.has_residual = residual is not None
        if residual is None:
            return y.view_as(x)
        return y.view_as(x), res_out.view_as(x)

    @staticmethod
    def backward(ctx, dy, dres_out=None):
        x2, weight, rstd = ctx.saved_tensors
        n_rows, n_cols = x2.shape
        dy2 = dy.reshape(-1, n_cols).contiguous()
        dres2 = dres_out.reshape(-1, n_cols).contiguous() if dres_out is not None else None
        dx = torch.empty_like(x2)
        programs = _num_programs(n_rows, x2.device)
        block = block_size(n_cols, _MAX_HIDDEN)
        dw_part = torch.empty(programs, n_cols, dtype=torch.float32, device=x2.device)
        _rms_norm_bwd[(programs,)](dy2, dres2 if dres2 is not None else dy2, x2, weight.contiguous(), rstd,
                                   dx, dw_part, n_rows, n_cols, triton.cdiv(n_rows, programs),
                                   HAS_DRES=dres2 is not None, BLOCK=block, num_warps=_num_warps(block))
        dw = dw_part.sum(0).to(weight.dtype)
        dx = dx.view(dy.shape)
        return dx, dw, (dx if ctx.has_residual else None), None
