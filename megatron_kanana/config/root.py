"""The root config: one object made of sections, read from YAML plus dotted overrides.

    cfg = load_config("examples/demo/train.yaml", ["parallel.tensor_model_parallel_size=2"])

Each component receives its own section. `model` names a preset and may
override any of its fields. `check()` is the one cross-section check; the rules of
each training mode live with its objective (training/objectives/registry.py picks it).
Paths are resolved against the config file's directory by the sections themselves
(fields marked `"path": True`). Files and overrides are parsed by one YAML reader whose
syntax errors name the file (or the override) and the line.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.evaluation.config import EvaluationConfig, check_scorable
from megatron_kanana.models.presets import get_preset
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig
from megatron_kanana.training.checkpoint_config import CheckpointConfig
from megatron_kanana.training.data import DataConfig
from megatron_kanana.posttrain.dpo import DPOConfig
from megatron_kanana.posttrain.online_dpo import OnlineDPOConfig
from megatron_kanana.posttrain.reward import RewardConfig
from megatron_kanana.posttrain.sft import SFTConfig
from megatron_kanana.training.distill_config import DistillConfig
from megatron_kanana.training.kernels_config import KernelsConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig
from megatron_kanana.training.metrics import LoggingConfig
from megatron_kanana.training.optim import OptimConfig
from megatron_kanana.training.run_config import RunConfig



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
    evaluation: Optional[EvaluationConfig] = field(default=None, metadata={
        "help": "lm-eval benchmarks of the live model every N steps and at stage ends (None: none)."})

    @classmethod
    def from_dict(cls, data, prefix: str = "", base_dir: Optional[Path] = None):
        data = dict(data or {})
        if "model" in data:
            data["model"] = resolve_model(data["model"])
        return super().from_dict(data, prefix, base_dir)

    def check(self, tokenizer_vocab_size: Optional[int] = None) -> None:
        """The cross-section check (layout checks need the world size: parallel.config.check_layout)."""
        from megatron_kanana.training.objectives import check_config

        if self.data.seq_length > self.model.max_position_embeddings:
            raise ConfigError(f"data.seq_length ({self.data.seq_length}) exceeds "
                              f"model.max_position_embeddings ({self.model.max_position_embeddings})")
        cp = self.parallel.context_parallel_size
        if cp > 1 and self.data.seq_length % (2 * cp):  # megatron's CP splits each sequence into 2 × CP chunks
            raise ConfigError(f"data.seq_length ({self.data.seq_length}) must be divisible by 2 × "
                              f"parallel.context_parallel_size ({2 * cp}) for context parallelism")
        if tokenizer_vocab_size is not None and tokenizer_vocab_size > self.model.vocab_size:
            raise ConfigError(f"the tokenizer has {tokenizer_vocab_size} tokens but model.vocab_size is "
                              f"{self.model.vocab_size}")
        if self.parallel.sequence_parallel and self.kernels.lm_head_loss == "fused":
            # caught here, not at model build on the cluster: the fused head needs every token's
            # hidden state on every TP rank, and sequence parallelism shards them
            raise ConfigError("kernels.lm_head_loss: fused needs the full sequence on every tensor-parallel rank; "
                              "with parallel.sequence_parallel set kernels.lm_head_loss: unfused")
        check_config(self)  # one training mode, and that mode's own rules
        if self.evaluation is not None:
            check_scorable(self)


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


def read_yaml(text: str, source: str) -> Any:
    """YAML from a file or an override; a syntax error names `source` and the line."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = " ".join(p for p in (getattr(e, "context", None), getattr(e, "problem", None)) if p) or str(e)
        raise ConfigError(f"{where}: invalid YAML: {problem}") from None


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
    node[parts[-1]] = read_yaml(raw, f"override {assignment!r}")


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    data = read_yaml(path.read_text(), str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    for assignment in overrides:
        apply_override(data, assignment)
    # paths in a config file are relative to the file, so configs work from any cwd
    return TrainConfig.from_dict(data, base_dir=path.parent)
