"""The stage plan: which stages run, how many steps each, at what length and RoPE, and the LR
at any global step.

A mixture stage may set `seq_length` and the model's position fields (rotary_base,
max_position_embeddings, rope_scaling; data/mixture.py): they hold from that stage on, in
mixture order, so a context-extension stage changes the length and RoPE of itself and every
later stage. Each Stage carries the resulting length and model shape; the trainer switches
the rotary embedding in place at a hand-off (no parameter changes shape).
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import rope
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.training.data import DataConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig, learning_rate, schedule_at


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    steps: int
    blend: list[tuple[str, float]]                       # (prefix, weight) for the training blend
    categories: dict[str, list[tuple[str, float]]]       # per-category blends for validation
    seq_length: Optional[int] = None     # tokens per sample in this stage (None: data.seq_length)
    model: Optional[ModelShape] = None   # the shape with this stage's RoPE and window (None: the model section)


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
    """A post-training run as one stage (at data.seq_length and the model section's shape): the
    trainer's loop, LR schedule and resume work unchanged."""
    stage = Stage(name=name, steps=steps, blend=[(p, 1.0) for p in prefixes], categories={})
    return StagePlan(stages=[stage], schedules=[schedule.replace(train_steps=steps)], mode="restart")


@dataclasses.dataclass(frozen=True)
class StageShape:
    seq_length: int
    model: ModelShape


def stage_shapes(mixture, path: str, data: DataConfig, model: ModelShape,
                 context_parallel_size: int = 1) -> dict[str, StageShape]:
    """Per mixture stage, in order, its length and model: the model section and data.seq_length,
    changed by each stage's fields from that stage on. Errors name the file and the stage's key."""
    shapes: dict[str, StageShape] = {}
    seq_length, shape, previous = data.seq_length, model, "the model section"
    for i, spec in enumerate(mixture.stages):
        key = f"{path}: stages[{i}]"
        changes = spec.position_changes()
        if changes:
            try:
                new = ModelShape.from_dict({**shape.to_dict(), **changes})
                rope.check_context_extension(shape.to_dict(), new.to_dict(), previous, key=key)
            except ConfigError as e:
                message = str(e)
                raise ConfigError(message if message.startswith(key) else f"{key}.{message}") from None
            shape = new
        seq_length = spec.seq_length or seq_length
        if seq_length > shape.max_position_embeddings:
            raise ConfigError(f"{key}.seq_length ({seq_length}) exceeds the stage's max_position_embeddings "
                              f"({shape.max_position_embeddings}, stage {spec.name}): set a longer window with "
                              f"the stage's max_position_embeddings (and RoPE)")
        cp = context_parallel_size
        if cp > 1 and seq_length % (2 * cp):  # megatron's CP splits each sequence into 2 × CP chunks
            raise ConfigError(f"{key}.seq_length ({seq_length}, stage {spec.name}) must be divisible by 2 × "
                              f"parallel.context_parallel_size ({2 * cp}) for context parallelism")
        shapes[spec.name] = StageShape(seq_length, shape)
        previous = f"stage {spec.name}"
    return shapes


def start_shape(data: DataConfig, model: ModelShape) -> tuple[ModelShape, str]:
    """The model shape a run starts with, and the key that gave its position fields: the first
    selected mixture stage's shape (the model section's without a mixture, or when no stage up
    to it changes them). Reads the mixture file only, no dataset."""
    if data.mixture is None:
        return model, "model"
    from megatron_kanana.data.mixture import load_mixture

    mixture = load_mixture(data.mixture)
    shapes = stage_shapes(mixture, data.mixture, data, model)
    names = [s.name for s in mixture.stages]
    first = (data.stages or names)[0]
    if first not in shapes:  # an unknown name: plan_stages says so
        return model, "model"
    changed = [i for i in range(names.index(first) + 1) if mixture.stages[i].position_changes()]
    return shapes[first].model, (f"{data.mixture}: stages[{changed[-1]}]" if changed else "model")


def plan_stages(data: DataConfig, schedule: ScheduleConfig, model: ModelShape,
                context_parallel_size: int = 1) -> StagePlan:
    from megatron_kanana.data.mixture import load_mixture, source_datasets, stage_blends

    mixture = load_mixture(data.mixture)
    shapes = stage_shapes(mixture, data.mixture, data, model, context_parallel_size)
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
        length, shape = shapes[name].seq_length, shapes[name].model
        stages.append(Stage(name=name, steps=data.steps_for(name, spec.token_budget, length),
                            blend=blends[name], categories=categories, seq_length=length, model=shape))
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
