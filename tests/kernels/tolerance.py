"""Tolerances for kernel-vs-reference comparisons, stated once.

Errors are measured against the scale of the reference (max |expected|), since
gradients span orders of magnitude and elementwise relative error is
meaningless near zero. fp32: the kernels reorder fp32 sums, so 1e-5 of scale.
bf16: one bf16 rounding is 2^-8 ≈ 0.4% relative; outputs rounded once or twice,
and weight gradients accumulated over chunks in bf16, stay within 2e-2 of scale.
"""
from __future__ import annotations

import torch

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.float().abs().max().clamp_min(1e-6)
    err = (actual.float() - expected.float()).abs().max()
    assert err <= TOLERANCE[dtype] * scale, f"{what}: max error {err:.3g} > {TOLERANCE[dtype]:g} × scale {scale:.3g}"
