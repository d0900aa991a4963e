"""Fused linear cross-entropy and KL (single process): chunked paths against the full-logits reference."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from kanana_kernels import fused_linear_cross_entropy, fused_linear_kl_div
from tests.kernels.tolerance import assert_close

TOKENS, HIDDEN, TEACHER_HIDDEN, VOCAB, CHUNK = 37, 20, 28, 300, 8  # 37 % 8 != 0; 300 is not a power of two


def _device(request, impl: str) -> str:
    return request.getfixturevalue("device") if impl == "triton" else "cpu"


def _ce_inputs(device, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(TOKENS, HIDDEN, generator=g).to(device, dtype)
    weight = (torch.randn(VOCAB, HIDDEN, generator=g) / HIDDEN ** 0.5).to(device, dtype)
    labels = torch.randint(0, VOCAB, (TOKENS,), generator=g).to(device)
    labels[[3, 17]] = -100
    g_loss, g_z = (torch.rand(TOKENS, generator=g).to(device) for _ in range(2))
    return hidden, weight, labels, g_loss, g_z


def _ce_run(impl, hidden, weight, labels, g_loss, g_z, use_z=True):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss, z = fused_linear_cross_entropy(h, w, labels, z_loss_coef=1e-2, chunk_size=CHUNK, impl=impl)
    total = (loss * g_loss).sum() + ((z * g_z).sum() if use_z else 0)
    total.backward()
    return loss, z, h.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_cross_entropy_matches_reference(request, impl, dtype):
    inputs = _ce_inputs(_device(request, impl), dtype)
    expected, actual = _ce_run("torch", *inputs), _ce_run(impl, *inputs)
    for name, a, e in zip(("loss", "z_loss", "grad_hidden", "grad_weight"), actual, expected):
        assert_close(a, e, dtype, name)
    assert actual[0][3] == 0 and actual[1][17] == 0, "ignored tokens must contribute nothing"


@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_cross_entropy_without_z_loss_gradient(request, impl):
    inputs = _ce_inputs(_device(request, impl), torch.float32, seed=1)
    expected, actual = _ce_run("torch", *inputs, use_z=False), _ce_run(impl, *inputs, use_z=False)
    assert_close(actual[2], expected[2], torch.float32, "grad_hidden")
    assert_close(actual[3], expected[3], torch.float32, "grad_weight")


def test_cross_entropy_reference_is_the_textbook_loss():
    hidden, weight, labels, _, _ = _ce_inputs("cpu", torch.float32)
    loss, z = fused_linear_cross_entropy(hidden, weight, labels, z_loss_coef=1e-2, impl="torch")
    logits = hidden @ weight.t()
    assert_close(loss, F.cross_entropy(logits, labels, reduction="none"), torch.float32, "loss")
    valid = labels != -100
    assert_close(z, 1e-2 * torch.logsumexp(logits, -1).square() * valid, torch.float32, "z_loss")


def _kl_inputs(device, dtype):
    g = torch.Generator().manual_seed(2)
    make = lambda *shape, scale=1.0: (scale * torch.randn(*shape, generator=g)).to(device, dtype)  # noqa: E731
    return (make(TOKENS, HIDDEN), make(VOCAB, HIDDEN, scale=HIDDEN ** -0.5),
            make(TOKENS, TEACHER_HIDDEN), make(VOCAB, TEACHER_HIDDEN, scale=TEACHER_HIDDEN ** -0.5),
            torch.rand(TOKENS, generator=g).to(device))


def _kl_run(impl, s_hidden, s_weight, t_hidden, t_weight, grad):
    h, w = s_hidden.clone().requires_grad_(), s_weight.clone().requires_grad_()
    kl = fused_linear_kl_div(h, w, t_hidden, t_weight, temperature=2.0, chunk_size=CHUNK, impl=impl)
    (kl * grad).sum().backward()
    return kl, h.grad, w.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_kl_matches_reference(request, impl, dtype):
    inputs = _kl_inputs(_device(request, impl), dtype)
    expected, actual = _kl_run("torch", *inputs), _kl_run(impl, *inputs)
    for name, a, e in zip(("kl", "grad_hidden", "grad_weight"), actual, expected):
        assert_close(a, e, dtype, name)


def test_kl_reference_is_the_textbook_kl():
    s_hidden, s_weight, t_hidden, t_weight, _ = _kl_inputs("cpu", torch.float32)
    kl = fused_linear_kl_div(s_hidden, s_weight, t_hidden, t_weight, temperature=2.0, impl="torch")
    log_p_s = F.log_softmax(s_hidden @ s_weight.t() / 2.0, -1)
    log_p_t = F.log_softmax(t_hidden @ t_weight.t() / 2.0, -1)
    expected = F.kl_div(log_p_s, log_p_t, log_target=True, reduction="none").sum(-1) * 4.0
    assert_close(kl, expected, torch.float32, "kl")


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor (in bytes) any aten op produces, forward and backward."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


@pytest.mark.parametrize("loss", ["cross_entropy", "kl"])
@pytest.mark.parametrize("impl", ["torch", "chunked", "triton"])
def test_chunked_losses_never_allocate_full_logits(request, loss, impl):
    tokens, hidden, vocab, chunk = 64, 8, 256, 16  # fp32 logits: 64 KiB in full, 16 KiB per chunk
    device = _device(request, impl)
    h = torch.randn(tokens, hidden, device=device, requires_grad=True)
    w = torch.randn(vocab, hidden, device=device, requires_grad=True)
    with _LargestTensor() as probe:
        if loss == "cross_entropy":
            out = fused_linear_cross_entropy(h, w, torch.randint(0, vocab, (tokens,), device=device),
                                             chunk_size=chunk, impl=impl)[0]
        else:
            out = fused_linear_kl_div(h, w, torch.randn(tokens, hidden, device=device),
                                      torch.randn(vocab, hidden, device=device), chunk_size=chunk, impl=impl)
        out.sum().backward()
    if impl == "torch":  # the probe must see the reference's full logits, or it proves nothing
        assert probe.largest >= tokens * vocab * 4
    else:
        assert probe.largest <= chunk * vocab * 4, f"largest tensor {probe.largest} bytes > one chunk of logits"


def test_bad_input_is_refused():
    h, w = torch.ones(4, 8), torch.ones(16, 8)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 16\)"):
        fused_linear_cross_entropy(h, w, torch.tensor([0, 1, 16, -100]), impl="torch")
    with pytest.raises(ValueError, match="labels must be an integer tensor"):
        fused_linear_cross_entropy(h, w, torch.zeros(4), impl="torch")
    with pytest.raises(ValueError, match="chunk_size"):
        fused_linear_cross_entropy(h, w, torch.zeros(4, dtype=torch.long), chunk_size=0)
    with pytest.raises(ValueError, match="weight"):
        fused_linear_cross_entropy(h, torch.ones(16, 7), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="teacher is frozen"):
        fused_linear_kl_div(h, w, h.clone().requires_grad_(), w)
    with pytest.raises(ValueError, match="temperature"):
        fused_linear_kl_div(h, w, h, w, temperature=0.0)
