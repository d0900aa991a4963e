"""Kanana's fused kernels: one dispatch point per op, each with a PyTorch reference and a Triton version.

Import package of the top-level `kernels/` folder (named kanana_kernels because a
PyPI distribution already owns the name `kernels`). It depends on torch only
(triton and flash-attn are imported when used) and never on megatron.core;
tensor-parallel ops take an explicit torch.distributed process group.
"""
from kanana_kernels.attention_backends import attention
from kanana_kernels.glu import swiglu
from kanana_kernels.linear_loss import fused_linear_cross_entropy, fused_linear_kl_div
from kanana_kernels.norm import rms_norm
from kanana_kernels.rotary import LLAMA3_THETA, apply_rope, rope_cos_sin

__all__ = [
    "LLAMA3_THETA",
    "apply_rope",
    "attention",
    "fused_linear_cross_entropy",
    "fused_linear_kl_div",
    "rms_norm",
    "rope_cos_sin",
    "swiglu",
]
