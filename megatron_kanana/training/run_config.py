"""The run section: where a run writes, its seed, and its stopping rules."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class RunConfig(Section):
    output_dir: str = field(metadata={
        "path": True, "help": "Run directory: checkpoints/, metrics.jsonl, tensorboard/, plots/."})
    seed: int = field(default=1234, metadata={"help": "Seed for weights, data order and dropout."})
    exit_after_steps: Optional[int] = field(
        default=None, metadata={"help": "Save and exit after this many steps of this invocation (job-length limit)."})
    max_consecutive_nan_steps: int = field(
        default=10, metadata={"help": "Stop (saving the last good state) after this many NaN/inf steps in a row."})
    inject_nan_at_steps: list[int] = field(default_factory=list, metadata={
        "help": "Debug / fault drill: the NaN guard sees these (1-based) steps' losses as NaN."})

    def validate(self) -> None:
        if self.exit_after_steps is not None and self.exit_after_steps < 1:
            raise ConfigError(f"exit_after_steps must be >= 1, got {self.exit_after_steps}")
        if self.max_consecutive_nan_steps < 1:
            raise ConfigError("max_consecutive_nan_steps must be >= 1")
        if any(step < 1 for step in self.inject_nan_at_steps):
            raise ConfigError(f"inject_nan_at_steps: steps are 1-based, got {self.inject_nan_at_steps}")
