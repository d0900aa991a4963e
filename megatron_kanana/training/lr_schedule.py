"""Learning-rate schedules of the Kanana recipe, as pure functions of the step.

`learning_rate(cfg, step)` gives the LR of 0-based optimizer step `step` for one
schedule: a linear warm-up, then the style's decay:

- "deepseek": DeepSeek LLM's multi-step schedule that Kanana uses (TR §2.3.1):
  peak LR until 80% of the steps, × 0.316 from there, × 0.316 again from 90%.
- "cosine": half-cosine from the peak to `min_lr` (Kanana's distillation runs).
- "wsd": warm-up / stable / decay; flat at the peak, then a short decay to
  `min_lr` over the last `wsd_decay_fraction` of the steps.
- "constant": the peak after warm-up.

The schedule reaches its end value at step == train_steps (just after the last
step, as in Megatron), and stays there for any later step.

`schedule_at(global_step, stages, mode)` maps a step counted across pre-training
stages to (the stage's schedule, its local step), so stage 2 either continues
stage 1's schedule or restarts its own. `weight_decay_for` converts Kanana's
"independent" weight decay into PyTorch AdamW's coupled `weight_decay`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Literal, Sequence

from megatron_kanana.config.section import ConfigError, Section

DecayStyle = Literal["deepseek", "cosine", "wsd", "constant"]
WsdShape = Literal["linear", "cosine", "sqrt"]
StageMode = Literal["continue", "restart"]


@dataclass(frozen=True)
class ScheduleConfig(Section):
    """One learning-rate schedule (a whole run, or one stage of it)."""

    lr_decay_style: DecayStyle = field(
        default="deepseek", metadata={"help": "decay after warm-up: deepseek | cosine | wsd | constant"})
    lr: float = field(default=3e-4, metadata={"help": "peak learning rate, reached at the end of warm-up"})
    min_lr: float = field(
        default=0.0, metadata={"help": "floor of the decay (end value of cosine and wsd; a floor for deepseek)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear warm-up length in optimizer steps"})
    train_steps: Optional[int] = field(
        default=None, metadata={"help": "total optimizer steps, warm-up included; None = derived from the stages' token budgets"})
    deepseek_milestones: tuple[float, ...] = field(
        default=(0.8, 0.9),
        metadata={"help": "fractions of train_steps at which the deepseek style multiplies the LR by deepseek_factor"})
    deepseek_factor: float = field(
        default=0.316, metadata={"help": "deepseek style: LR multiplier applied at each milestone (sqrt(0.1))"})
    wsd_decay_fraction: float = field(
        default=0.1, metadata={"help": "wsd style: fraction of train_steps spent in the final decay"})
    wsd_decay_shape: WsdShape = field(
        default="sqrt", metadata={"help": "wsd style: decay curve: linear | cosine | sqrt (the '1-sqrt' shape)"})

    def validate(self) -> None:
        if not self.lr > 0:
            raise ConfigError(f"lr: the peak learning rate must be > 0, got {self.lr}")
        if not 0 <= self.min_lr <= self.lr:
            raise ConfigError(f"min_lr: must be in [0, lr={self.lr}], got {self.min_lr}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup_steps: must be >= 0, got {self.warmup_steps}")
        if not 0 < self.deepseek_factor <= 1:
            raise ConfigError(f"deepseek_factor: must be in (0, 1], got {self.deepseek_factor}")
        if not 0 < self.wsd_decay_fraction <= 1:
            raise ConfigError(f"wsd_decay_fraction: must be in (0, 1], got {self.wsd_decay_fraction}")
        if self.train_steps is None:  # a template: the step checks run once the trainer sets the length
            return
        if self.train_steps < 1:
            raise ConfigError(f"train_steps: must be >= 1, got {self.train_steps}")
        if not 0 <= self.warmup_steps <= self.train_steps:
            raise ConfigError(
                f"warmup_steps: must be in [0, train_steps={self.train_steps}], got {self.warmup_steps}")
        if self.lr_decay_style == "deepseek":
            self._validate_milestones()
        if self.lr_decay_style == "wsd" and wsd_decay_start(self) < self.warmup_steps:
            raise ConfigError(
                f"wsd_decay_fraction: the decay would start at step {wsd_decay_start(self)}, "
                f"inside the warm-up (warmup_steps={self.warmup_steps})")

    def _validate_milestones(self) -> None:
        ms = tuple(self.deepseek_milestones)
        if any(not 0 < m <= 1 for m in ms):
            raise ConfigError(f"deepseek_milestones: each must be a fraction in (0, 1], got {list(ms)}")
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ConfigError(f"deepseek_milestones: must be strictly increasing, got {list(ms)}")
        steps = deepseek_milestone_steps(self)
        if steps and steps[0] < self.warmup_steps:
            raise ConfigError(
                f"deepseek_milestones: the first drop falls at step {steps[0]}, "
                f"inside the warm-up (warmup_steps={self.warmup_steps})")


def deepseek_milestone_steps(cfg: ScheduleConfig) -> tuple[int, ...]:
    """The steps at which the deepseek style drops the LR (rounded, so 0.8 × 1000 is exactly 800)."""
    return tuple(int(round(m * cfg.train_steps)) for m in cfg.deepseek_milestones)


def wsd_decay_start(cfg: ScheduleConfig) -> int:
    """First step of the wsd decay phase."""
    return cfg.train_steps - int(round(cfg.wsd_decay_fraction * cfg.train_steps))


def learning_rate(cfg: ScheduleConfig, step: int) -> float:
    """LR of 0-based optimizer step `step` under schedule `cfg`.

    Warm-up is lr · (step + 1) / warmup_steps: it ramps linearly up from 0 and the
    last warm-up step runs at the peak, so no step is wasted at LR 0.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if cfg.train_steps is None:
        raise ValueError("learning_rate: the schedule has no train_steps yet (a template)")
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    style = cfg.lr_decay_style
    if style == "constant":
        return cfg.lr
    if style == "deepseek":
        drops = sum(step >= s for s in deepseek_milestone_steps(cfg))
        return max(cfg.min_lr, cfg.lr * cfg.deepseek_factor ** drops)
    if style == "cosine":
        progress = _progress(step, cfg.warmup_steps, cfg.train_steps)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if style == "wsd":
        start = wsd_decay_start(cfg)
        if step < start:
            return cfg.lr
        remaining = _wsd_remaining(cfg.wsd_decay_shape, _progress(step, start, cfg.train_steps))
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * remaining
    raise ConfigError(f"lr_decay_style: unknown style {style!r}")  # unreachable after validate()


def _progress(step: int, begin: int, end: int) -> float:
    """Fraction of [begin, end) done at `step`, clamped to [0, 1]."""
    if end <= begin:
        return 1.0
    return min(1.0, max(0.0, (step - begin) / (end - begin)))


def _wsd_remaining(shape: str, progress: float) -> float:
    """Share of (lr - min_lr) left at `progress` through the wsd decay."""
    if shape == "linear":
        return 1.0 - progress
    if shape == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if shape == "sqrt":  # "1 - sqrt": drops fast at first, then flattens (Hägele et al. 2024)
        return 1.0 - math.sqrt(progress)
    raise ConfigError(f"wsd_decay_shape: unknown shape {shape!r}")


def weight_decay_for(independent_wd: float, peak_lr: float) -> float:
    """PyTorch AdamW `weight_decay` that realises an *independent* weight decay.

    AdamW decays p ← p − lr_t · wd · p, so its decay strength scales with the peak
    LR: change the LR and the regularisation changes with it. Kanana (after
    Wortsman et al. 2023, "Small-scale proxies for large-scale Transformer training
    instabilities") fixes the decay per step at λ · s(t), with λ = 1e-4 and s(t) the
    schedule's multiplier lr_t / peak_lr, independent of the peak. Setting
    wd = λ / peak_lr gives lr_t · wd = s(t) · λ, exactly that, while the optimizer
    still follows the schedule.
    """
    if independent_wd < 0:
        raise ValueError(f"independent_wd must be >= 0, got {independent_wd}")
    if not peak_lr > 0:
        raise ValueError(f"peak_lr must be > 0, got {peak_lr}")
    return independent_wd / peak_lr


def schedule_at(global_step: int, stages: Sequence[ScheduleConfig], mode: StageMode) -> tuple[ScheduleConfig, int]:
    """The schedule and local step for `global_step` of a run made of stages.

    `stages[i].train_steps` is stage i's length in steps.
    - "restart": each stage runs its own schedule from local step 0 (warm-up
      again), as after depth up-scaling or for distillation.
    - "continue": stage 1's schedule stretched over all stages' steps, so stage 2
      picks up the LR where stage 1 left off (Kanana: the DeepSeek drops at 80% and
      90% of the 3T tokens; 90% is where the 300B-token stage 2 begins). Later
      stages then only give their length and must otherwise equal stage 1.
    """
    if not stages:
        raise ValueError("schedule_at: no stages given")
    if mode not in ("continue", "restart"):
        raise ConfigError(f"stage mode: {mode!r} is not one of ['continue', 'restart']")
    total = sum(s.train_steps for s in stages)
    if not 0 <= global_step < total:
        raise ValueError(f"global step {global_step} is outside the run's {total} steps")
    if mode == "continue":
        _check_same_schedule(stages)
        return stages[0].replace(train_steps=total), global_step
    start = 0
    for stage in stages:
        if global_step < start + stage.train_steps:
            return stage, global_step - start
        start += stage.train_steps
    raise AssertionError("unreachable: global_step < total")


def _check_same_schedule(stages: Sequence[ScheduleConfig]) -> None:
    first = stages[0].to_dict()
    for i, stage in enumerate(stages[1:], start=2):
        other = stage.to_dict()
        diff = [k for k in first if k != "train_steps" and first[k] != other[k]]
        if diff:
            raise ConfigError(
                f"schedule of stage {i}: a continued schedule may only change train_steps, "
                f"but {', '.join(diff)} differ from stage 1")
