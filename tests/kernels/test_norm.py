"""RMSNorm (with and without the fused residual add): Triton kernel against the PyTorch reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from kanana_kernels import rms_norm
from tests.kernels.tolerance import assert_close


def _run(impl, x, weight, residual, grads):
    leaves = [t.detach().clone().requires_grad_() for t in (x, weight) + ((residual,) if residual is not None else ())]
    normed, new_residual = rms_norm(leaves[0], leaves[1], 1e-5, leaves[2] if residual is not None else None, impl=impl)
    (normed.float() * grads[0]).sum().add((new_residual.float() * grads[1]).sum()).backward()
    return [normed, new_residual] + [t.grad for t in leaves]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("with_residual", [False, True])
def test_triton_matches_reference_forward_and_backward(device, dtype, with_residual):
    torch.manual_seed(0)
    shape = (3, 5, 100)  # hidden 100: not a power of two, so the row block is masked
    x = torch.randn(shape, device=device, dtype=dtype)
    weight = (1 + 0.1 * torch.randn(100, device=device)).to(dtype)
    residual = torch.randn(shape, device=device, dtype=dtype) if with_residual else None
    grads = [torch.randn(shape, device=device) for _ in range(2)]
    expected = _run("torch", x, weight, residual, grads)
    actual = _run("triton", x, weight, residual, grads)
    names = ["normed", "new_residual", "grad_x", "grad_weight", "grad_residual"]
    for name, a, e in zip(names, actual, expected):
        assert_close(a, e, dtype, name)


def test_reference_matches_torch_rms_norm():
    x, w = torch.randn(4, 48), torch.randn(48)
    normed, new_residual = rms_norm(x, w, 1e-5, impl="torch")
    assert_close(normed, F.rms_norm(x, (48,), w, 1e-5), torch.float32, "normed")
    assert new_residual is x


def test_residual_is_added_before_norm():
    x, r, w = torch.randn(2, 48), torch.randn(2, 48), torch.ones(48)
    normed, new_residual = rms_norm(x, w, 1e-5, residual=r, impl="torch")
    assert torch.equal(new_residual, x + r)
    assert_close(normed, F.rms_norm(x + r, (48,), w, 1e-5), torch.float32, "normed")


@pytest.mark.parametrize("kwargs, message", [
    (dict(weight=torch.ones(47)), "weight shape"),
    (dict(eps=0.0), "eps must be > 0"),
    (dict(residual=torch.ones(2, 47)), "residual"),
    (dict(residual=torch.ones(2, 48, dtype=torch.bfloat16)), "residual"),
    (dict(impl="cuda"), "impl must be one of"),
])
def test_bad_input_is_refused(kwargs, message):
    args = dict(x=torch.ones(2, 48), weight=torch.ones(48), eps=1e-5, residual=None, impl="torch") | kwargs
    with pytest.raises(ValueError, match=message):
        rms_norm(**args)
