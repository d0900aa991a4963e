"""The optim section: AdamW as Kanana trains it.

Kanana uses "independent" weight decay (Wortsman et al.): the decay applied per
step is 1e-4 × (lr / peak_lr), not 1e-4 × lr, so changing the peak LR does not
change regularisation. PyTorch-style AdamW multiplies decay by the current LR,
hence `weight_decay = independent_weight_decay / peak_lr`
(training/lr_schedule.weight_decay_for).
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

    def validate(self) -> None:
        if (self.independent_weight_decay is None) == (self.weight_decay is None):
            raise ConfigError("set exactly one of independent_weight_decay and weight_decay")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.clip_grad < 0 or self.z_loss_coef < 0 or self.adam_eps <= 0:
            raise ConfigError("clip_grad and z_loss_coef must be >= 0 and adam_eps > 0")

    def decay_for(self, peak_lr: float) -> float:
        from megatron_kanana.training.lr_schedule import weight_decay_for

        if self.weight_decay is not None:
            return self.weight_decay
        return weight_decay_for(self.independent_weight_decay, peak_lr)
