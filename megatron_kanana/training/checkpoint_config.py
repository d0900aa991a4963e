"""The checkpoint section."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section


@dataclasses.dataclass(frozen=True)
class CheckpointConfig(Section):
    save_interval: int = field(default=0, metadata={"help": "Save every N steps (0 = only at the end and on signals)."})
    keep_last: int = field(default=3, metadata={"help": "Keep this many newest checkpoints (0 = keep all)."})
    load: Optional[str] = field(
        default=None, metadata={"path": True, "help": "Start from this checkpoint (run root or iter_* dir) when the run has none."})
    load_optimizer: bool = field(
        default=True, metadata={"help": "Restore optimizer state from `load` (model-only checkpoints have none)."})
    reset_progress: bool = field(
        default=False, metadata={"help": "Treat `load` as initial weights only: step 0, data from the start."})
    async_save: Optional[bool] = field(default=None, metadata={"help": "Write asynchronously; None = on GPU only."})
    save_on_signals: tuple[str, ...] = field(
        default=("SIGTERM", "SIGUSR1"), metadata={"help": "Signals that trigger save-and-exit (SLURM preemption)."})

    def validate(self) -> None:
        if self.save_interval < 0 or self.keep_last < 0:
            raise ConfigError("save_interval and keep_last must be >= 0")
        for name in self.save_on_signals:
            if name not in ("SIGTERM", "SIGUSR1", "SIGUSR2", "SIGINT"):
                raise ConfigError(f"save_on_signals: unsupported signal {name!r}")
