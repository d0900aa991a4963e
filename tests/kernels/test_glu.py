"""SwiGLU over megatron's concatenated [gate; up] fc1 output: Triton against the reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kanana_kernels import swiglu
from tests.kernels.tolerance import assert_close


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_reference_forward_and_backward(device, dtype):
    torch.manual_seed(0)
    fc1_out = torch.randn(3, 5, 2 * 100, device=device, dtype=dtype)  # ffn 100: masked block
    grad = torch.randn(3, 5, 100, device=device)
    results = []
    for impl in ("torch", "triton"):
        x = fc1_out.clone().requires_grad_()
        y = swiglu(x, impl=impl)
        (y.float() * grad).sum().backward()
        results.append((y, x.grad))
    assert_close(results[1][0], results[0][0], dtype, "swiglu output")
    assert_close(results[1][1], results[0][1], dtype, "swiglu grad")


def test_reference_follows_megatron_layout():
    # megatron-core mlp.py: x_glu, x_linear = torch.chunk(x, 2, dim=-1); silu(x_glu) * x_linear
    gate, up = torch.randn(4, 24), torch.randn(4, 24)
    out = swiglu(torch.cat([gate, up], dim=-1), impl="torch")
    assert_close(out, F.silu(gate) * up, torch.float32, "swiglu")


def test_odd_width_is_refused():
    with pytest.raises(ValueError, match="even"):
        swiglu(torch.ones(2, 7), impl="torch")
