"""The optim section: AdamW as Kanana trains it.

Kanana uses "independent" weight decay (Wortsman et al.): the decay applied per
step is 1e-4 × (lr / peak_lr), not 1e-4 × lr, so changing the peak LR does not
change regularisation. PyTorch-style AdamW multiplies decay by the current LR,
hence `weight_decay = independent_weight_decay / peak_lr`
(training/lr_schedule.weight_decay_for).

It also holds how megatron's DDP reduces gradients and the distributed optimizer gathers
parameters (Megatron-LM's names: `overlap_grad_reduce`, `overlap_param_gather`,
`align_param_gather`, `bucket_size`, `grad_reduce_in_fp32`). The overlap defaults follow
Megatron-LM's production recipes on GPU (on when DP > 1) and stay off on CPU, where gloo
runs collectives on the caller's thread: nothing would be hidden, and the stored CPU loss
curves were recorded without it (set them true to test the overlapped path on CPU).
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
    adam_beta1: float = field(default=0.9, metadata={"help": "Adam beta1."})
    adam_beta2: float = field(default=0.95, metadata={"help": "Adam beta2."})
    adam_eps: float = field(default=1e-8, metadata={"help": "Adam epsilon."})
    clip_grad: float = field(default=1.0, metadata={"help": "Global gradient-norm clip (0 = off)."})
    independent_weight_decay: Optional[float] = field(
        default=1e-4, metadata={"help": "Kanana's decay not scaled by the peak LR; None to use weight_decay."})
    weight_decay: Optional[float] = field(
        default=None, metadata={"help": "Plain AdamW decay (multiplied by the LR); exclusive with the above."})
    z_loss_coef: float = field(default=5e-6, metadata={"help": "z-loss coefficient (Kanana: 5e-6 at every size)."})
    use_distributed_optimizer: bool = field(default=True, metadata={"help": "Shard optimizer state over DP ranks."})
    bf16: Optional[bool] = field(default=None, metadata={"help": "bf16 params (fp32 master in the optimizer); None = on GPU only."})
    overlap_grad_reduce: Optional[bool] = field(default=None, metadata={
        "help": "Reduce gradient buckets during the last micro-batch's backward; None = on GPU when DP > 1."})
    overlap_param_gather: Optional[bool] = field(default=None, metadata={
        "help": "All-gather updated parameters during the next forward (distributed optimizer); "
                "None = on GPU when DP > 1."})
    align_param_gather: bool = field(default=True, metadata={
        "help": "With PP and overlap_param_gather: launch all chunks' gathers together (Megatron-LM's default)."})
    bucket_size: Optional[int] = field(default=None, metadata={
        "help": "Gradient bucket size in elements; None = megatron's (max(40M, 1M × DP) when overlapping)."})
    grad_reduce_in_fp32: bool = field(default=True, metadata={
        "help": "Accumulate and reduce gradients in fp32 (main_grad); false = in the parameter dtype."})

    def validate(self) -> None:
        if (self.independent_weight_decay is None) == (self.weight_decay is None):
            raise ConfigError("set exactly one of independent_weight_decay and weight_decay")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.clip_grad < 0 or self.z_loss_coef < 0 or self.adam_eps <= 0:
            raise ConfigError("clip_grad and z_loss_coef must be >= 0 and adam_eps > 0")
        if self.overlap_param_gather and not self.use_distributed_optimizer:
            raise ConfigError("overlap_param_gather needs use_distributed_optimizer: true "
                              "(only the distributed optimizer gathers parameters)")
        if self.overlap_param_gather and self.overlap_grad_reduce is False:
            raise ConfigError("overlap_param_gather needs overlap_grad_reduce (megatron's bucket "
                              "bookkeeping overlaps both or neither)")
        if self.bucket_size is not None and self.bucket_size < 1:
            raise ConfigError(f"bucket_size must be >= 1 element, got {self.bucket_size}")

    def resolved_overlap(self, data_parallel_size: int, device: str) -> tuple[bool, bool]:
        """(overlap_grad_reduce, overlap_param_gather) with the defaults applied: on for GPU
        runs with DP > 1 (Megatron-LM's recipes), off on CPU and where nothing is reduced."""
        default = device == "cuda" and data_parallel_size > 1
        grad = default if self.overlap_grad_reduce is None else self.overlap_grad_reduce
        param = default if self.overlap_param_gather is None else self.overlap_param_gather
        return grad, bool(param and grad and self.use_distributed_optimizer)

    def decay_for(self, peak_lr: float) -> float:
        from megatron_kanana.training.lr_schedule import weight_decay_for

        if self.weight_decay is not None:
            return self.weight_decay
        return weight_decay_for(self.independent_weight_decay, peak_lr)
