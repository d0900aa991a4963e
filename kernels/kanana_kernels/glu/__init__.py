"""SwiGLU activation over megatron-core's concatenated [gate; up] fc1 output: the one dispatch point."""
from __future__ import annotations

import torch

from kanana_kernels.dispatch import resolve_impl
from kanana_kernels.glu.reference import swiglu_reference


def swiglu(fc1_out: torch.Tensor, impl: str = "auto") -> torch.Tensor:
    """silu(gate) * up where `fc1_out[..., :F]` is gate and `fc1_out[..., F:]` is up; returns [..., F]."""
    if fc1_out.dim() < 1 or fc1_out.shape[-1] == 0 or fc1_out.shape[-1] % 2:
        raise ValueError(f"swiglu: last dim must be even and non-zero ([gate; up]), got shape {tuple(fc1_out.shape)}")
    if resolve_impl(impl, fc1_out, "swiglu") == "torch":
        return swiglu_reference(fc1_out)
    from kanana_kernels.glu.triton_kernels import SwiGLUFunction

    return SwiGLUFunction.apply(fc1_out)
