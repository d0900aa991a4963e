"""RoPE on Q and K in megatron's [seq, batch, heads, head_dim] layout: Triton against the reference."""
from __future__ import annotations

import pytest
import torch

from kanana_kernels import LLAMA3_THETA, apply_rope, rope_cos_sin
from tests.kernels.tolerance import assert_close


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference_forward_and_backward(device, dtype):
    torch.manual_seed(0)
    seq, batch, heads, kv_heads, head_dim = 7, 2, 6, 2, 24  # 12 pairs: masked column block
    q = torch.randn(seq, batch, heads, head_dim, device=device, dtype=dtype)
    k = torch.randn(seq, batch, kv_heads, head_dim, device=device, dtype=dtype)
    cos, sin = rope_cos_sin(seq, head_dim, device=device)
    grads = torch.randn_like(q, dtype=torch.float32), torch.randn_like(k, dtype=torch.float32)
    results = []
    for impl in ("torch", "triton"):
        q_, k_ = q.clone().requires_grad_(), k.clone().requires_grad_()
        rq, rk = apply_rope(q_, k_, cos, sin, impl=impl)
        ((rq.float() * grads[0]).sum() + (rk.float() * grads[1]).sum()).backward()
        results.append((rq, rk, q_.grad, k_.grad))
    for name, a, e in zip(("q", "k", "grad_q", "grad_k"), results[1], results[0]):
        assert_close(a, e, dtype, name)


def test_reference_is_llama_rotate_half_with_theta_500000():
    # Independent statement of the spec: dims (i, i + d/2) form a complex number rotated by pos * theta^(-2i/d).
    seq, head_dim = 5, 8
    q = torch.randn(seq, 1, 2, head_dim)
    cos, sin = rope_cos_sin(seq, head_dim)
    rq, _ = apply_rope(q, q[:, :, :1], cos, sin, impl="torch")
    angle = torch.arange(seq)[:, None] * LLAMA3_THETA ** (-torch.arange(0, head_dim, 2) / head_dim)
    z = torch.complex(q[..., : head_dim // 2], q[..., head_dim // 2:]) * torch.polar(torch.ones_like(angle),
                                                                                    angle)[:, None, None, :]
    assert_close(rq, torch.cat([z.real, z.imag], dim=-1), torch.float32, "rope")


def test_mismatched_tables_are_refused():
    q = torch.ones(4, 1, 2, 8)
    cos, sin = rope_cos_sin(5, 8)
    with pytest.raises(ValueError, match="cos/sin"):
        apply_rope(q, q, cos, sin, impl="torch")
    with pytest.raises(ValueError, match="even"):
        rope_cos_sin(4, 7)
