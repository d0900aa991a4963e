"""The GPUs the planner knows, with the figures it assumes (stated, so a user can disagree).

Peaks are NVIDIA's dense bf16/fp8 tensor-core figures. Link bandwidths are effective
collective bus bandwidths (what NCCL's ring all-reduce reaches), not the data-sheet numbers:
NVLink 4 (900 GB/s bidirectional) ~360 GB/s; 8 × 400 Gb/s NDR InfiniBand per node ~40 GB/s per
GPU; A100: NVLink 3 ~230 GB/s, 8 × 200 Gb/s HDR ~20 GB/s. `reserve` is what CUDA, NCCL buffers
and allocator fragmentation take before a tensor is allocated.
"""
from __future__ import annotations

import dataclasses

GIB = 1024 ** 3


@dataclasses.dataclass(frozen=True)
class GPU:
    name: str
    memory: float          # bytes
    bf16_flops: float      # dense peak, FLOP/s
    fp8_flops: float       # 0 where the GPU has no FP8 tensor cores
    nvlink_bw: float       # bytes/s, effective bus bandwidth within a node
    ib_bw: float           # bytes/s per GPU, effective, across nodes
    hbm_bw: float          # bytes/s
    gpus_per_node: int = 8
    reserve: float = 6 * GIB

    @property
    def usable_memory(self) -> float:
        return self.memory - self.reserve


GPUS = {
    "h100": GPU("H100 SXM 80GB", 79.6 * GIB, 989e12, 1979e12, 360e9, 40e9, 3.35e12),
    "h200": GPU("H200 SXM 141GB", 140.4 * GIB, 989e12, 1979e12, 360e9, 40e9, 4.8e12),
    "a100": GPU("A100 SXM 80GB", 80.0 * GIB, 312e12, 0.0, 230e9, 20e9, 2.0e12),
}

# The fraction of peak the layers' GEMMs reach in a Megatron/TE step (NeMo's 8B: 59% MFU all
# included; the Megatron-LM README's GPT runs 41-48%); the validation table in
# benchmarks/README.md shows the error this choice makes on each published run.
COMPUTE_EFFICIENCY = 0.55
# FP8 GEMMs do not reach twice bf16's step rate (casts, amax bookkeeping, bf16 attention):
# published FP8/bf16 tokens/s ratios are ~1.33 (NeMo 8B), so FP8 counts as this much faster.
FP8_SPEEDUP = 1.33
