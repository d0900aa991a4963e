"""The stage plan: which stages run, how many steps each, and the LR at any global step."""
from __future__ import annotations

import dataclasses
from typing import Optional

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.data import DataConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig, learning_rate, schedule_at


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    blend: list[tuple[str, float]]                       # (prefix, weight) for the training blend
    categories: dict[str, list[tuple[str, float]]]       # per-category blends for validation


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """All stages the LR schedule spans; training starts at stage `start_index`.

    With a continued schedule the plan spans every stage of the mixture even when
    `data.stages` selects later ones only (stage 2 resumed from a stage-1 run), so
    the LR picks up where stage 1 left it; with a restarted one it spans the
    selected stages."""

    stages: list[Stage]
    schedules: list[ScheduleConfig]
    mode: str
    start_index: int = 0
    end_index: Optional[int] = None  # exclusive; None = through the last stage

    @property
    def run_range(self) -> range:
        return range(self.start_index, len(self.stages) if self.end_index is None else self.end_index)

    @property
    def end_step(self) -> int:
        """Global step at which this run's last selected stage ends."""
        return self.first_step(self.run_range.stop)

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def first_step(self, index: int) -> int:
        return sum(s.steps for s in self.stages[:index])

    def locate(self, global_step: int) -> tuple[int, int]:
        """(stage index, step within the stage) of a global step."""
        for i, stage in enumerate(self.stages):
            if global_step < stage.steps:
                return i, global_step
            global_step -= stage.steps
        return len(self.stages), 0

    def lr(self, global_step: int) -> float:
        cfg, local = schedule_at(global_step, self.schedules, self.mode)
        return learning_rate(cfg, local)


def one_stage_plan(name: str, steps: int, prefixes: list[str], schedule: ScheduleConfig) -> StagePlan:
    """A post-training run as one stage: the trainer's loop, LR schedule and resume work unchanged."""
    stage = Stage(name=name, steps=steps, blend=[(p, 1.0) for p in prefixes], categories={})
    return StagePlan(stages=[stage], schedules=[schedule.replace(train_steps=steps)], mode="restart")


def plan_stages(data: DataConfig, schedule: ScheduleConfig) -> StagePlan:
    from megatron_kanana.data.mixture import load_mixture, source_datasets, stage_blends

    mixture = load_mixture(data.mixture)
    data_root = data.data_root
    blends = stage_blends(mixture, data_root)
    all_names = [s.name for s in mixture.stages]
    selected = data.stages or all_names
    for name in selected:
        if name not in blends:
            raise ConfigError(f"data.stages: {name!r} is not a stage of {data.mixture} "
                              f"(stages: {', '.join(blends)})")
    if data.stage_schedule == "continue":
        first = all_names.index(selected[0])
        if selected != all_names[first:first + len(selected)]:
            raise ConfigError("data.stages: a continued schedule needs consecutive stages in mixture order")
        names, start_index = all_names, first
    else:
        names, start_index = list(selected), 0
    stages = []
    for name in names:
        spec = mixture.stage(name)
        categories: dict[str, list[tuple[str, float]]] = {}
        for source in spec.sources:
            for prefix in source_datasets(mixture, source, data_root):
                categories.setdefault(source.category, []).append((prefix, 1.0))
        stages.append(Stage(name=name, steps=data.steps_for(name, spec.token_budget),
                            blend=blends[name], categories=categories))
    _check_stated_length(schedule, stages, data)
    # A continued schedule spans the whole mixture even when this run stops early, so
    # separate stage-1 and stage-2 runs see the same LR curve as one run would.
    schedules = []
    for stage in stages:
        try:
            schedules.append(schedule.replace(train_steps=stage.steps))
        except ConfigError as e:
            raise ConfigError(f"schedule (stage {stage.name}, {stage.steps} steps): {e}") from None
    return StagePlan(stages=stages, schedules=schedules, mode=data.stage_schedule,
                     start_index=start_index, end_index=start_index + len(selected))


def _check_stated_length(schedule: ScheduleConfig, stages: list[Stage], data: DataConfig) -> None:
    """With a mixture the stages decide the length; a schedule.train_steps that says otherwise
    would be silently replaced, so it must state the derived total or be left out."""
    if schedule.train_steps is None:
        return
    total = sum(s.steps for s in stages)
    if schedule.train_steps != total:
        per_stage = ", ".join(f"{s.name}: {s.steps}" for s in stages)
        raise ConfigError(
            f"schedule.train_steps is {schedule.train_steps}, but with data.mixture the run's length comes from "
            f"the stages ({per_stage}; total {total}, from their token budgets and data.stage_steps), which wins: "
            f"set schedule.train_steps to {total} or leave it out, and change the length with data.stage_steps")
