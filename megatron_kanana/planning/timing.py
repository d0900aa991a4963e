"""Step time of a layout: compute at a stated fraction of peak, TP/PP/DP communication over
stated link bandwidths, the pipeline bubble, and what overlap hides.

Volumes are ring-collective bytes per GPU: all-reduce 2(n-1)/n·M, all-gather and
reduce-scatter (n-1)/n·M each. Megatron reduces gradients only after the last micro-batch,
so overlap_grad_reduce hides the reduce-scatter behind that micro-batch's backward, and
overlap_param_gather hides the all-gather behind the first micro-batch's forward.
"""
from __future__ import annotations

import dataclasses


def ring(n: int, size: float, kind: str) -> float:
    """Bytes each rank sends in a ring collective over n ranks of a `size`-byte tensor."""
    if n <= 1:
        return 0.0
    return (2 if kind == "all_reduce" else 1) * (n - 1) / n * size


def tp_bytes_per_layer(s: int, b: int, h: int, tp: int, recompute_full: bool) -> float:
    """Per layer and micro-batch: 2 all-reduces (or AG + RS with SP, the same volume) forward,
    2 backward, of the [s, b, h] bf16 activation; full recomputation repeats the forward's."""
    per = ring(tp, 2 * s * b * h, "all_reduce")
    return per * (2 + 2 + (2 if recompute_full else 0))


def cp_bytes_per_layer(s: int, b: int, kv_dim: int, cp: int) -> float:
    """Per layer and micro-batch: ring attention passes each rank's K and V chunk
    ([s/cp, b, kv_dim] bf16 each) to the next rank cp-1 times forward, and K, V and their
    gradients backward (twice the forward's volume)."""
    if cp <= 1:
        return 0.0
    chunk = 2 * 2 * (s // cp) * b * kv_dim
    return 3 * (cp - 1) * chunk


def pipeline_bubble(pp: int, vpp: int, micro_batches: int, t_micro: float) -> float:
    """1F1B's idle time: (p-1) micro-batch slots, divided by the chunks per stage (interleaving)."""
    if pp <= 1:
        return 0.0
    return (pp - 1) / vpp * t_micro


def exposed(comm: float, window: float, overlap: bool) -> float:
    return max(0.0, comm - window) if overlap else comm


@dataclasses.dataclass(frozen=True)
class StepTime:
    compute: float
    bubble: float
    tp_comm: float
    pp_comm: float
    dp_grad_comm: float
    dp_param_comm: float
    optimizer: float
    cp_comm: float = 0.0  # context parallelism's K/V ring, where the attention blocks do not hide it

    @property
    def total(self) -> float:
        return sum(dataclasses.astuple(self))
