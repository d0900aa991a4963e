"""The one interface between the training loop and what it trains.

    objective = build_objective(cfg)                 # registry.py: the config's section picks the class
    plan = objective.stage_plan()                    # which stages, how many steps
    objective.prepare_model(chunks)                  # before DDP: e.g. the reward head
    objective.attach(rt, chunks, tokenizer)          # after the optimizer: companions, forward step
    train, valid = objective.datasets(stage_index)
    batches, extra = objective.step_batches(train, stage_step, step, chunks)

The trainer (training/trainer.py) owns the loop, the LR, the NaN guard, checkpoints,
metrics and resume, and calls only these methods: it never asks which mode it runs.

Adding a mode is one module with an `Objective` subclass and one line in registry.py:
say which config section selects it, its rules (`check_config`), its plan, and override
what differs from plain language modelling — the forward step and its loss keys, the
frozen companion models (companion.py builds and pairs them), the datasets and the
batches of a step, how a checkpoint loads into the model and which model kind it writes.
Compare torchtitan's TrainSpec: there a spec bundles builders; here the objective is a
small object because several modes also hold state (a frozen reference, a sampler).
"""
from __future__ import annotations

from typing import Callable, ClassVar, Optional

from megatron_kanana.training.data import collate, micro_batches


class Objective:
    """Defaults are plain language modelling; subclasses override what their mode changes."""

    section: ClassVar[Optional[str]] = None   # the config section that selects this objective
    model_kind: ClassVar[str] = "lm"          # written to checkpoint meta; checked by every consumer
    loadable_kinds: ClassVar[tuple[str, ...]] = ("lm",)  # what checkpoint.load may point at

    def __init__(self, cfg):
        self.cfg = cfg
        self.rt = self.tokenizer = None
        self.forward_step = None
        self.schedule_chunks: list = []       # what megatron's schedules run (the model, or model + companion)
        self.loss_key: str = "lm loss"        # the optimised loss in the forward step's loss dict
        self.extra_keys: tuple[str, ...] = ("z loss",)  # further loss-dict entries averaged each step
        self.valid_keys: dict[str, str] = {"lm loss": "lm loss"}  # validation: reported name -> loss-dict key

    # -- configuration: before any process group exists ----------------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        """Raise ConfigError naming the key when the sections contradict this mode."""

    @classmethod
    def preflight(cls, cfg) -> None:
        """Cheap checks of this mode's inputs (metadata only), in the launcher before any worker."""

    @classmethod
    def companion_checkpoints(cls, cfg) -> list[tuple[str, str]]:
        """(config key, path) of the frozen models' checkpoints, checked before launch."""
        return []

    def stage_plan(self):
        raise NotImplementedError

    def model_kernels(self):
        """The kernels section the trained model is built with (the fused LM head returns hidden
        states, which only the LM-loss steps consume)."""
        return self.cfg.kernels

    # -- model -----------------------------------------------------------------------------
    def prepare_model(self, chunks: list) -> None:
        """Change the freshly built model before DDP and the optimizer see its parameters."""

    def load_state(self) -> Callable:
        """(chunks, optimizer or None, directory) -> None: how a checkpoint loads into the model."""
        from megatron_kanana.mcore.checkpoint import load_training_state

        return load_training_state

    def attach(self, rt, chunks: list, tokenizer) -> None:
        """After DDP and the optimizer: build companions and set the forward step and loss keys."""
        self.rt, self.tokenizer, self.schedule_chunks = rt, tokenizer, chunks
        self.forward_step = self._forward_step()

    def _forward_step(self):
        raise NotImplementedError

    # -- data ------------------------------------------------------------------------------
    def datasets(self, stage_index: int, plan) -> tuple:
        """(train, {category: valid}) of a stage; the trainer keeps one stage's alive at a time."""
        raise NotImplementedError

    def step_batches(self, train, stage_step: int, step: int, chunks: list) -> tuple[list[dict], dict]:
        """This rank's micro-batches for global step `step`, and extra metrics to log with it."""
        return micro_batches(train, stage_step, self.cfg.data, self.rt.data_rank, self.rt.layout.data), {}

    def validation_batches(self, dataset) -> list[dict]:
        """This data-parallel rank's equal share of a validation set, in whole micro-batches."""
        mbs, dp, rank = self.cfg.data.micro_batch_size, self.rt.layout.data, self.rt.data_rank
        per_rank = max(1, len(dataset) // dp) // mbs * mbs
        samples = [dataset[i] for i in range(rank * per_rank, (rank + 1) * per_rank)]
        return [collate(samples[i:i + mbs]) for i in range(0, per_rank, mbs)]

    def close(self) -> None:
        """Stop what the objective started (online DPO's sampler thread)."""
