"""Where logged metrics go: a JSONL file, TensorBoard, wandb, a terminal progress bar.

Each sink takes flat `{name: number}` scalars for an iteration and has `close()`.
TensorBoard, wandb and tqdm are imported only when their sink is built, so a
run that turns them off never pays their import. A sink that cannot start
(package missing, wandb refusing to init) logs a warning and the run goes on:
losing a dashboard must never lose a training run.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

from megatron_kanana.log import get_logger

logger = get_logger(__name__)

METRICS_FILENAME = "metrics.jsonl"


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf; write null so every line stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


class JsonlSink:
    """Appends one JSON object per record to RUN_DIR/metrics.jsonl.

    Appending (not truncating) keeps the history of a resumed run; readers keep
    the last record per (kind, iteration), so steps replayed after a resume
    replace the lost ones. Each line is flushed, so a crash loses at most one.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / METRICS_FILENAME
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(_finite_or_none(record), allow_nan=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class TensorBoardSink:
    """Scalars under RUN_DIR/tensorboard, one tag per metric (`train/loss`, `validation/code`)."""

    def __init__(self, run_dir: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # lazy: pulls in tensorboard

        self.log_dir = run_dir / "tensorboard"
        self._writer = SummaryWriter(log_dir=str(self.log_dir))

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        for tag, value in scalars.items():
            if value is not None:
                self._writer.add_scalar(tag, value, global_step=iteration)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


class WandbSink:
    """A wandb run, offline unless the user set WANDB_MODE.

    Offline by default because training nodes often have no network and an
    online init can hang; `wandb sync RUN_DIR/wandb/offline-run-*` uploads later.
    """

    def __init__(self, run_dir: Path, project: str, run_name: str, config: Mapping[str, Any] | None) -> None:
        import wandb  # lazy: heavy, and spawns its service process

        mode = os.environ.get("WANDB_MODE") or "offline"
        self._run = wandb.init(
            project=project, name=run_name, mode=mode, config=dict(config or {}),
            dir=os.environ.get("WANDB_DIR") or str(run_dir),
            settings=wandb.Settings(silent=True, x_disable_stats=True, disable_git=True, save_code=False),
        )

    def write(self, iteration: int, scalars: Mapping[str, float]) -> None:
        self._run.log({k: v for k, v in scalars.items() if v is not None}, step=iteration)

    def close(self) -> None:
        self._run.finish()


class ProgressBar:
    """A tqdm bar on stdout; log lines are written around it so neither is garbled."""

    def __init__(self, total: int, initial: int) -> None:
        from tqdm import tqdm  # lazy; tqdm comes with transformers

        self._tqdm = tqdm
        self._bar = tqdm(total=total, initial=initial, file=sys.stdout, dynamic_ncols=True,
                         unit="it", desc="train")

    def advance(self, postfix: Mapping[str, str] | None = None) -> None:
        self._bar.update(1)
        if postfix:
            self._bar.set_postfix(postfix, refresh=False)

    def around_output(self):
        """Context manager: hide the bar while a log line is printed."""
        return self._tqdm.external_write_mode(file=sys.stdout)

    def close(self) -> None:
        self._bar.close()


def try_open(name: str, factory, *args: Any) -> Any:
    """Build a sink, or warn and return None when it cannot start."""
    try:
        return factory(*args)
    except Exception as e:  # noqa: BLE001 - any failure of an optional sink must not stop training
        logger.warning("%s logging disabled: could not start it (%s: %s)", name, type(e).__name__, e)
        return None
