"""The root config: one object made of sections, read from YAML plus dotted overrides.

    cfg = load_config("examples/demo/train.yaml", ["parallel.tensor_model_parallel_size=2"])

Each component receives its own section. `model` names a preset and may
override any of its fields. `check()` is the one cross-section check.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.models.presets import get_preset
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig
from megatron_kanana.training.checkpoint_config import CheckpointConfig
from megatron_kanana.training.data import DataConfig
from megatron_kanana.posttrain.dpo import DPOConfig
from megatron_kanana.posttrain.online_dpo import OnlineDPOConfig
from megatron_kanana.posttrain.preference import check_pair_batch
from megatron_kanana.posttrain.reward import RewardConfig
from megatron_kanana.posttrain.sft import SFTConfig
from megatron_kanana.training.distill_config import DistillConfig, check_compatible
from megatron_kanana.training.kernels_config import KernelsConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig
from megatron_kanana.training.metrics import LoggingConfig
from megatron_kanana.training.optim import OptimConfig
from megatron_kanana.training.run_config import RunConfig


POST_TRAINING = ("sft", "reward", "dpo", "online_dpo")  # sections that replace data.mixture
PAIR_MODES = ("reward", "dpo", "online_dpo")  # trained on (chosen, rejected) row pairs


@dataclasses.dataclass(frozen=True)
class TrainConfig(Section):
    run: RunConfig = field(metadata={"help": "Run directory, seed, stopping rules."})
    model: ModelShape = field(metadata={"help": "Model shape: {preset: NAME, <field>: override, ...}."})
    data: DataConfig = field(metadata={"help": "Mixture, tokenizer, batch sizes."})
    parallel: ParallelConfig = field(default_factory=ParallelConfig, metadata={"help": "TP/PP/VPP/SP/CP."})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "AdamW, clipping, z-loss."})
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig, metadata={"help": "LR schedule template."})
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig, metadata={"help": "Saving and loading."})
    logging: LoggingConfig = field(default_factory=LoggingConfig, metadata={"help": "Log lines and sinks."})
    kernels: KernelsConfig = field(default_factory=KernelsConfig, metadata={
        "help": "Per op: Kanana's kernels or megatron-core's modules; fused or unfused LM-head loss."})
    distill: Optional[DistillConfig] = field(default=None, metadata={
        "help": "Logit distillation from a frozen teacher checkpoint (None: plain language modelling)."})
    sft: Optional[SFTConfig] = field(default=None, metadata={
        "help": "Supervised fine-tuning on chat data (replaces data.mixture)."})
    reward: Optional[RewardConfig] = field(default=None, metadata={
        "help": "Bradley–Terry reward model on preference pairs (replaces data.mixture)."})
    dpo: Optional[DPOConfig] = field(default=None, metadata={
        "help": "Offline DPO on preference pairs against a frozen reference (replaces data.mixture)."})
    online_dpo: Optional[OnlineDPOConfig] = field(default=None, metadata={
        "help": "Online DPO: pairs sampled from the policy, scored by a reward model (replaces data.mixture)."})

    @classmethod
    def from_dict(cls, data, prefix: str = ""):
        data = dict(data or {})
        if "model" in data:
            data["model"] = resolve_model(data["model"])
        return super().from_dict(data, prefix)

    def check(self, tokenizer_vocab_size: Optional[int] = None) -> None:
        """The cross-section check (layout checks need the world size: parallel.config.check_layout)."""
        if self.data.seq_length > self.model.max_position_embeddings:
            raise ConfigError(f"data.seq_length ({self.data.seq_length}) exceeds "
                              f"model.max_position_embeddings ({self.model.max_position_embeddings})")
        if tokenizer_vocab_size is not None and tokenizer_vocab_size > self.model.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer_vocab_size} tokens but model.vocab_size is "
                              f"{self.model.vocab_size}")
        if self.distill is not None:
            check_compatible(self.model, self.distill.teacher_shape())
        modes = {"data.mixture": self.data.mixture, **{name: getattr(self, name) for name in POST_TRAINING}}
        chosen = [name for name, value in modes.items() if value is not None]
        if len(chosen) != 1:
            raise ConfigError(f"set exactly one of {list(modes)} (pre-training or one post-training stage); "
                              f"set: {chosen or 'none'}")
        mode = chosen[0]
        if mode in POST_TRAINING:
            if getattr(self, mode).seq_length != self.data.seq_length:
                raise ConfigError(f"{mode}.seq_length ({getattr(self, mode).seq_length}) != data.seq_length "
                                  f"({self.data.seq_length})")
            if self.distill is not None:
                raise ConfigError(f"distill is a pre-training mode; unset it for {mode}")
        if mode in PAIR_MODES:
            check_pair_batch(mode, self.data.global_batch_size, self.data.micro_batch_size)
        if mode == "online_dpo" and self.parallel.virtual_pipeline_model_parallel_size not in (None, 1):
            raise ConfigError("online_dpo generates with one model chunk per rank: "
                              "parallel.virtual_pipeline_model_parallel_size must be unset")

    @property
    def model_kernels(self) -> KernelsConfig:
        """The kernels the trained model is built with: the fused LM head returns hidden states,
        which the plain LM and distillation steps consume; the post-training steps compute their
        losses from logits, and the reward model replaces the output layer with its own head."""
        if any(getattr(self, name) is not None for name in POST_TRAINING):
            return self.kernels.replace(lm_head_loss="unfused")
        return self.kernels


def resolve_model(model: Any) -> ModelShape:
    if isinstance(model, ModelShape):
        return model
    if isinstance(model, str):
        return get_preset(model)
    if not isinstance(model, dict):
        raise ConfigError(f"model: expected a preset name or a mapping, got {type(model).__name__}")
    model = dict(model)
    base = get_preset(model.pop("preset")).to_dict() if "preset" in model else {}
    base.update(model)
    return ModelShape.from_dict(base, prefix="model")


def apply_override(data: dict, assignment: str) -> None:
    """`a.b.c=value`: value parsed as YAML (so 2 is an int, [1,2] a list, null None)."""
    if "=" not in assignment:
        raise ConfigError(f"override {assignment!r} is not of the form dotted.key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {key}: {part} is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for assignment in overrides:
        apply_override(data, assignment)
    _resolve_relative_paths(data, path.parent)
    for section in (data.get(name) for name in POST_TRAINING):
        if isinstance(section, dict):  # post-training dataset prefixes and prompt files are paths too
            for key in ("data_prefixes", "valid_prefixes", "prompts"):
                if isinstance(section.get(key), list):
                    section[key] = [str((path.parent / p).resolve())
                                    if isinstance(p, str) and not Path(p).is_absolute() else p for p in section[key]]
    return TrainConfig.from_dict(data)


def _resolve_relative_paths(data: dict, base: Path) -> None:
    """Paths in a config file are relative to the file, so configs work from any cwd."""
    for section, key in (("data", "mixture"), ("data", "tokenizer"), ("data", "data_root"), ("run", "output_dir"), ("checkpoint", "load"),
                         ("distill", "teacher"), ("dpo", "reference"), ("online_dpo", "reference"),
                         ("online_dpo", "reward_model")):
        value = (data.get(section) or {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute() and not value.startswith("$"):
            data[section][key] = str((base / value).resolve())
