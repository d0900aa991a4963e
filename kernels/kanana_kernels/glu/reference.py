"""SwiGLU in plain PyTorch: the specification the Triton kernel must match.

Input is megatron-core's linear_fc1 output with gated_linear_unit=True: the last
dim holds [gate; up] concatenated (mlp.py splits it with torch.chunk(x, 2, -1)
and applies the activation to the first half). Under tensor parallelism each rank
holds its own [gate_shard; up_shard], so the op is local. Math in fp32, one cast.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def swiglu_reference(fc1_out: torch.Tensor) -> torch.Tensor:
    gate, up = torch.chunk(fc1_out.float(), 2, dim=-1)
    return (F.silu(gate) * up).to(fc1_out.dtype)
