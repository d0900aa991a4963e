"""Checks of what a training config points at, run before any process trains.

    preflight.check(cfg)      # from `kanana train`, in the launcher's own process

Cheap by design (metadata and indexes, never the tokens or weights): the evaluation
section's tasks (known to lm-eval, code tasks consented to, their datasets cached
when the hub is offline), the stage plan (every dataset present and non-empty,
schedule.train_steps honest), pre-training data made with data.tokenizer and
within the model's vocabulary, and every
checkpoint the run will read (checkpoint.load, the distillation teacher, DPO
references, the reward model) holding metadata the restricted unpickler accepts, and a
RoPE / window change against checkpoint.load fitting that checkpoint (context extension).
A failure raises the project's errors, naming the file or key; cli.py prints it.
"""
from __future__ import annotations

from pathlib import Path

from megatron_kanana.checkpointing import layout
from megatron_kanana.training.stages import start_shape


def check(cfg) -> None:
    from megatron_kanana.training.objectives import objective_class

    if cfg.evaluation is not None:  # names only: needs none of the data the checks below read
        check_evaluation_tasks(cfg.evaluation)
    objective = objective_class(cfg)  # its own inputs (pre-training data) and companion checkpoints
    objective.preflight(cfg)
    for key, path in checkpoints_read(cfg) + objective.companion_checkpoints(cfg):
        check_checkpoint(key, path)
    for key, path in checkpoints_read(cfg):
        if key == "checkpoint.load":  # against the model of the stage the run starts in
            shape, shape_key = start_shape(cfg.data, cfg.model)
            check_context_change(shape.to_dict(), layout.resolve(Path(path)), shape_key)


def check_evaluation_tasks(evaluation) -> None:
    """The tasks `evaluation` names exist and can run here: a typo fails now, with the closest
    names, not at the first evaluation hours into the run."""
    from megatron_kanana.evaluation import in_training, tasks

    offline = tasks.choose_hub_mode()  # before lm-eval imports `datasets`, which reads the switch
    in_training.check_tasks(evaluation, in_training.task_manager(evaluation), offline)


def check_pretraining_inputs(cfg) -> None:
    from megatron_kanana.data.pretrain_check import check_pretraining_data
    from megatron_kanana.data.tokenizer import load_tokenizer
    from megatron_kanana.training.stages import plan_stages

    plan = plan_stages(cfg.data, cfg.schedule, cfg.model, cfg.parallel.context_parallel_size)
    prefixes = [p for stage in plan.stages for p, _ in stage.blend]
    prefixes += [p for stage in plan.stages for pairs in stage.categories.values() for p, _ in pairs]
    check_pretraining_data(prefixes, load_tokenizer(cfg.data.tokenizer), cfg.model.vocab_size)


def checkpoints_read(cfg) -> list[tuple[str, str]]:
    """(config key, path) of the checkpoint the trained model starts from (companions: the objective's)."""
    own = layout.latest(Path(cfg.run.output_dir) / "checkpoints") if (Path(cfg.run.output_dir) / "checkpoints").exists() else None
    # the run resumes its own latest checkpoint when it has one; checkpoint.load only starts a fresh run
    found = [("run.output_dir", str(own))] if own is not None else [("checkpoint.load", cfg.checkpoint.load)]
    return [(k, p) for k, p in found if p]


def check_checkpoint(key: str, path: str) -> None:
    """The checkpoint at `path` exists and its dist-checkpoint metadata is safe to read."""
    from megatron_kanana.checkpointing.safe_load import read_dcp_metadata

    try:
        directory = layout.resolve(Path(path))
    except layout.CheckpointError as e:
        raise layout.CheckpointError(f"{key}: {e}") from None
    read_dcp_metadata(directory)


def check_context_change(model: dict, directory: Path, key: str = "model") -> None:
    """A fresh run may start from a checkpoint with another RoPE / window (context extension);
    the change must fit the checkpoint (models/rope.py). Other shape changes are the loader's to refuse.
    `key`: where the run's position fields were set (the model section, or a mixture stage)."""
    from megatron_kanana.models import rope

    saved = layout.read_meta(directory).get("model")
    if saved is not None and rope.is_context_extension(saved, model):
        rope.check_context_extension(saved, model, f"checkpoint.load {directory}", key=key)
