"""RMSNorm in plain PyTorch: the specification the Triton kernel must match.

Statistics and scaling run in fp32 whatever the input dtype, and the result is
cast back once, as Transformer Engine's RMSNorm does. The residual add happens in
the input dtype, because that sum is the residual stream the next layer reads.
"""
from __future__ import annotations

import torch


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float,
                       residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    if residual is not None:
        x = x + residual
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps) * weight.float()
    return normed.to(x.dtype), x
