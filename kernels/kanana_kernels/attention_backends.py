"""Causal self-attention with grouped-query heads: a thin dispatch over existing kernels.

Inputs use megatron's layout [seq, batch, heads, head_dim] (k and v may have
fewer heads than q, a divisor of them). Backends:
- "torch": scaled_dot_product_attention with enable_gqa=True, so K/V are never
  repeated in memory; on GPU it picks flash / cuDNN / memory-efficient kernels.
- "flash_attn": the flash-attn package (GQA native), when installed; CUDA, fp16/bf16.
"auto" prefers flash-attn when it is installed and applicable, else "torch".
Transformer Engine attention is reached through megatron-core's TE layer spec
(TEDotProductAttention), not from here: it is a module with its own state.
"""
from __future__ import annotations

import functools
import importlib.util

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "torch", "flash_attn")


@functools.cache
def flash_attn_available() -> bool:
    return importlib.util.find_spec("flash_attn") is not None


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    if q.dim() != 4 or k.shape != v.shape or k.dim() != 4:
        raise ValueError(f"attention: q, k, v must be [seq, batch, heads, head_dim] with k.shape == v.shape; "
                         f"got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if q.shape[1] != k.shape[1] or q.shape[3] != k.shape[3] or q.shape[2] % k.shape[2]:
        raise ValueError(f"attention: batch and head_dim must match and q heads ({q.shape[2]}) must be a "
                         f"multiple of kv heads ({k.shape[2]}); got q {tuple(q.shape)}, k {tuple(k.shape)}")


def _resolve(impl: str, q: torch.Tensor) -> str:
    if impl not in BACKENDS:
        raise ValueError(f"attention: impl must be one of {', '.join(BACKENDS)}; got {impl!r}")
    fits_flash = q.is_cuda and q.dtype in (torch.float16, torch.bfloat16)
    if impl == "auto":
        return "flash_attn" if fits_flash and flash_attn_available() else "torch"
    if impl == "flash_attn" and not (flash_attn_available() and fits_flash):
        raise RuntimeError("attention: impl='flash_attn' needs the flash-attn package and fp16/bf16 CUDA tensors")
    return impl


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
              softmax_scale: float | None = None, impl: str = "auto") -> torch.Tensor:
    """Attention output [seq, batch, heads, head_dim] (q's heads), scale 1/sqrt(head_dim) unless given."""
    _check(q, k, v)
    if _resolve(impl, q) == "flash_attn":
        from flash_attn import flash_attn_func

        # flash-attn wants [batch, seq, heads, dim].
        out = flash_attn_func(*(t.transpose(0, 1) for t in (q, k, v)), softmax_scale=softmax_scale, causal=causal)
        return out.transpose(0, 1)
    # SDPA wants [batch, heads, seq, dim]; permute views, no copies of K/V per query group.
    q_, k_, v_ = (t.permute(1, 2, 0, 3) for t in (q, k, v))
    out = F.scaled_dot_product_attention(q_, k_, v_, is_causal=causal, scale=softmax_scale,
                                         enable_gqa=q.shape[2] != k.shape[2])
    return out.permute(2, 0, 1, 3)
