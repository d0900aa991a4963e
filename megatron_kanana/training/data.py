"""The data section and the batches a training step consumes.

Each stage of the mixture file (data/mixture.py) becomes a megatron-core
blended dataset. Step k of a stage takes samples [k·G, (k+1)·G) of it (G the
global batch); data-parallel rank r takes its contiguous slice, cut into
micro-batches. The data position is therefore just (stage, step): resuming
re-creates the same batches exactly, at any parallel layout.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from typing import Literal, Optional

import torch

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    tokenizer: str = field(metadata={
        "path": True, "help": "Tokenizer path (tokenizer.json, or a SentencePiece dir/model)."})
    mixture: Optional[str] = field(
        default=None, metadata={"path": True, "help": "Mixture YAML (stages of weighted dataset prefixes); None with an `sft` section."})
    data_root: Optional[str] = field(
        default=None, metadata={"path": True, "help": "Base directory of the mixture's relative dataset paths (overrides its data_root)."})
    stages: Optional[list[str]] = field(default=None, metadata={"help": "Stages to run in order; None = all."})
    stage_schedule: Literal["continue", "restart"] = field(
        default="continue", metadata={"help": "LR schedule across stages: one schedule, or one per stage."})
    seq_length: int = field(default=2048, metadata={
        "help": "Tokens per sample (a mixture stage may set its own: data/mixture.py)."})
    micro_batch_size: int = field(default=1, metadata={"help": "Samples per micro-batch per DP rank."})
    global_batch_size: int = field(default=8, metadata={"help": "Samples per optimizer step over all DP ranks."})
    split: tuple[float, ...] = field(default=(98.0, 2.0, 0.0), metadata={"help": "train/valid/test document split."})
    eval_interval: int = field(default=0, metadata={"help": "Validate every N steps (0 = only at stage ends)."})
    eval_samples: int = field(default=16, metadata={"help": "Validation samples per category."})
    stage_steps: Optional[dict] = field(
        default=None, metadata={"help": "Override steps per stage {name: steps}; default: tokens / (G × seq)."})

    def validate(self) -> None:
        for name in ("seq_length", "micro_batch_size", "global_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.global_batch_size % self.micro_batch_size:
            raise ConfigError(f"global_batch_size ({self.global_batch_size}) is not a multiple of "
                              f"micro_batch_size ({self.micro_batch_size})")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or self.split[0] <= 0:
            raise ConfigError(f"split must be three non-negative numbers with a train share, got {list(self.split)}")
        if self.eval_interval < 0 or self.eval_samples < 0:
            raise ConfigError("eval_interval and eval_samples must be >= 0")

    def accumulation_steps(self, data_parallel_size: int) -> int:
        per_rank = self.micro_batch_size * data_parallel_size
        if self.global_batch_size % per_rank:
            raise ConfigError(
                f"global_batch_size ({self.global_batch_size}) is not divisible by micro_batch_size "
                f"({self.micro_batch_size}) × data-parallel size ({data_parallel_size})")
        return self.global_batch_size // per_rank

    def steps_for(self, stage: str, tokens: int, seq_length: Optional[int] = None) -> int:
        """Steps of a stage: its token budget over the tokens of a step at the stage's length
        (`seq_length`; None = data.seq_length), unless data.stage_steps names it."""
        if self.stage_steps and stage in self.stage_steps:
            return int(self.stage_steps[stage])
        return max(1, math.ceil(tokens / (self.global_batch_size * (seq_length or self.seq_length))))


def micro_batches(dataset, step: int, cfg: DataConfig, dp_rank: int, dp_size: int) -> list[dict]:
    """This rank's micro-batches for optimizer step `step` of a stage."""
    per_rank = cfg.global_batch_size // dp_size
    first = step * cfg.global_batch_size + dp_rank * per_rank
    out = []
    for start in range(first, first + per_rank, cfg.micro_batch_size):
        samples = [dataset[i] for i in range(start, start + cfg.micro_batch_size)]
        out.append(collate(samples))
    return out


def collate(samples: list[dict]) -> dict:
    keys = ("tokens", "labels", "loss_mask", "position_ids") + (("segment_ids",) if "segment_ids" in samples[0] else ())
    batch = {k: torch.stack([s[k] for s in samples]) for k in keys}  # segment_ids: packed SFT samples
    batch["tokens"] = batch["tokens"].long()
    batch["labels"] = batch["labels"].long()
    return batch

