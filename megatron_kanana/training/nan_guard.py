"""The policy for NaN/inf losses: skip the step, count it, stop after too many in a row.

A lone non-finite loss (one bad batch, a transient overflow) should cost one
step, not the run; a run of them means training has diverged, and going on
would only burn compute and overwrite good checkpoints. So the trainer asks
`NanGuard.check(loss, grad_norm)` every step: False means "skip the optimizer
step"; after `max_consecutive_bad_steps` bad steps in a row it raises
`TrainingDiverged`, which the trainer catches to save the last good state and stop.
"""
from __future__ import annotations

import math

from megatron_kanana.log import get_logger

logger = get_logger(__name__)


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a NaN/inf loss or gradient norm."""


class NanGuard:
    """Counts non-finite steps; raises `TrainingDiverged` after N in a row."""

    def __init__(self, max_consecutive_bad_steps: int = 10) -> None:
        if max_consecutive_bad_steps < 1:
            raise ValueError(f"max_consecutive_bad_steps must be >= 1, got {max_consecutive_bad_steps}")
        self.max_consecutive_bad_steps = max_consecutive_bad_steps
        self.consecutive = 0  # bad steps since the last good one
        self.skipped_total = 0  # bad steps over the whole run (kept in checkpoints)

    def check(self, loss: float, grad_norm: float | None = None, step: int | None = None) -> bool:
        """True: apply this step. False: skip it (loss or grad norm is NaN/inf).

        Raises TrainingDiverged on the N-th consecutive bad step. `loss` may be a
        0-d tensor; float() of it syncs with the device once, which the trainer
        pays anyway to log the loss.
        """
        values = {"loss": float(loss)}
        if grad_norm is not None:
            values["grad norm"] = float(grad_norm)
        bad = {name: v for name, v in values.items() if not math.isfinite(v)}
        if not bad:
            self.consecutive = 0
            return True
        self.consecutive += 1
        self.skipped_total += 1
        where = f"step {step}" if step is not None else "this step"
        what = ", ".join(f"{name} {v}" for name, v in bad.items())
        if self.consecutive >= self.max_consecutive_bad_steps:
            raise TrainingDiverged(
                f"training diverged: {self.consecutive} consecutive steps with a non-finite "
                f"loss or grad norm (last at {where}: {what}); limit is {self.max_consecutive_bad_steps}. "
                "Lower the LR or resume from an earlier checkpoint.")
        logger.warning("skipping %s: %s (%d in a row, %d skipped in total)",
                       where, what, self.consecutive, self.skipped_total)
        return False

    def state_dict(self) -> dict[str, int]:
        return {"consecutive": self.consecutive, "skipped_total": self.skipped_total}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.consecutive = int(state["consecutive"])
        self.skipped_total = int(state["skipped_total"])
