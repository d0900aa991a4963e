"""Rotary position embedding in plain PyTorch: the specification the Triton kernel must match.

Layout is megatron's [seq, batch, heads, head_dim]; rotation is the
non-interleaved "rotate half" form Llama and megatron-core use (rope_utils.py:
t * cos + cat(-t2, t1) * sin with cos/sin of cat(freqs, freqs)). cos/sin are
[seq, head_dim // 2] in fp32; math in fp32, one cast back.
"""
from __future__ import annotations

import torch

LLAMA3_THETA = 500000.0


def rope_cos_sin(seq_len: int, head_dim: int, theta: float = LLAMA3_THETA, device=None,
                 positions: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables [seq, head_dim // 2] for positions 0..seq-1 (or the given positions)."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"rope: head_dim must be positive and even, got {head_dim}")
    if theta <= 0:
        raise ValueError(f"rope: theta must be > 0, got {theta}")
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    if positions is None:
        positions = torch.arange(seq_len, dtype=torch.float32, device=device)
    elif positions.shape != (seq_len,):
        raise ValueError(f"rope: positions shape {tuple(positions.shape)} != ({seq_len},)")
    freqs = torch.outer(positions.float(), inv_freq)
    return freqs.cos(), freqs.sin()


def rotate_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = torch.chunk(x.float(), 2, dim=-1)
    c, s = cos[:, None, None, :], sin[:, None, None, :]
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


def apply_rope_reference(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor,
                         sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return rotate_reference(q, cos, sin), rotate_reference(k, cos, sin)
