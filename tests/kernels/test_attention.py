"""Attention dispatch: SDPA with grouped-query heads in megatron's layout against an explicit softmax."""
from __future__ import annotations

import math

import pytest
import torch

from kanana_kernels import attention
from tests.kernels.tolerance import assert_close


def _explicit_attention(q, k, v, causal):
    group = q.shape[2] // k.shape[2]
    k, v = (t.repeat_interleave(group, dim=2) for t in (k, v))
    scores = torch.einsum("sbhd,tbhd->bhst", q, k) / math.sqrt(q.shape[-1])
    if causal:
        seq = q.shape[0]
        scores = scores.masked_fill(torch.ones(seq, seq, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhst,tbhd->sbhd", scores.softmax(-1), v)


@pytest.mark.parametrize("causal", [True, False])
def test_gqa_matches_explicit_attention_forward_and_backward(causal):
    torch.manual_seed(0)
    seq, batch, heads, kv_heads, dim = 9, 2, 6, 2, 16
    inputs = [torch.randn(seq, batch, h, dim) for h in (heads, kv_heads, kv_heads)]
    grad = torch.randn(seq, batch, heads, dim)
    results = []
    for fn in (_explicit_attention, lambda q, k, v, c: attention(q, k, v, causal=c, impl="torch")):
        leaves = [t.clone().requires_grad_() for t in inputs]
        out = fn(*leaves, causal)
        (out * grad).sum().backward()
        results.append([out] + [t.grad for t in leaves])
    for name, a, e in zip(("out", "grad_q", "grad_k", "grad_v"), results[1], results[0]):
        assert_close(a, e, torch.float32, name)


def test_bad_shapes_and_backends_are_refused():
    q, kv = torch.ones(4, 1, 6, 8), torch.ones(4, 1, 4, 8)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        attention(q, kv, kv)
    with pytest.raises(ValueError, match="impl must be one of"):
        attention(q, q, q, impl="te")
    with pytest.raises(RuntimeError, match="flash-attn"):
        attention(q, q, q, impl="flash_attn")
