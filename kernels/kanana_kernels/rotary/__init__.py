"""Rotary position embedding applied to Q and K: the one dispatch point.

Llama 3 / Kanana use theta 500000 with no scaling; build the tables once per
sequence length with `rope_cos_sin` and pass them to every layer.
"""
from __future__ import annotations

import torch

from kanana_kernels.dispatch import resolve_impl
from kanana_kernels.rotary.reference import LLAMA3_THETA, apply_rope_reference, rope_cos_sin

__all__ = ["LLAMA3_THETA", "apply_rope", "rope_cos_sin"]


def _check(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k)):
        if t.dim() != 4:
            raise ValueError(f"apply_rope: {name} must be [seq, batch, heads, head_dim], got shape {tuple(t.shape)}")
    if q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"apply_rope: q {tuple(q.shape)} and k {tuple(k.shape)} differ in seq, batch or head_dim")
    expected = (q.shape[0], q.shape[3] // 2)
    if q.shape[3] % 2 or cos.shape != expected or sin.shape != expected:
        raise ValueError(f"apply_rope: cos/sin must be [seq, head_dim // 2] = {expected} with an even head_dim; "
                         f"got {tuple(cos.shape)}, {tuple(sin.shape)}")


def apply_rope(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
               impl: str = "auto") -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q [seq, batch, heads, head_dim] and k [seq, batch, kv_heads, head_dim]; returns (q, k)."""
    _check(q, k, cos, sin)
    if resolve_impl(impl, q, "apply_rope") == "torch":
        return apply_rope_reference(q, k, cos, sin)
    from kanana_kernels.rotary.triton_kernels import RopeFunction

    return RopeFunction.apply(q, k, cos, sin)
