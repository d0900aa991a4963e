"""RMSNorm, optionally fused with the residual add: the one dispatch point.

In a pre-norm block the residual add that closes one sub-layer and the norm
that opens the next read the same row; fusing them saves one pass over the
residual stream. Pass the sub-layer output as `x` and the old residual stream as
`residual`; you get back the normed input to the next sub-layer and the new
residual stream.
"""
from __future__ import annotations

import torch

from kanana_kernels.dispatch import resolve_impl
from kanana_kernels.norm.reference import rms_norm_reference


def _check(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None) -> None:
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"rms_norm: x needs a non-empty last (hidden) dim, got shape {tuple(x.shape)}")
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"rms_norm: weight shape {tuple(weight.shape)} != (hidden,) = ({x.shape[-1]},)")
    if not eps > 0:
        raise ValueError(f"rms_norm: eps must be > 0, got {eps}")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(f"rms_norm: residual {tuple(residual.shape)}/{residual.dtype} must match "
                         f"x {tuple(x.shape)}/{x.dtype}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-5, residual: torch.Tensor | None = None,
             impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(normed, new_residual)`; `new_residual` is `x + residual`, or `x` itself without a residual."""
    _check(x, weight, eps, residual)
    if resolve_impl(impl, x, "rms_norm") == "torch":
        return rms_norm_reference(x, weight, eps, residual)
    from kanana_kernels.norm.triton_kernels import RMSNormFunction

    if residual is None:
        return RMSNormFunction.apply(x, weight, None, eps), x
    return RMSNormFunction.apply(x, weight, residual, eps)
