"""On-disk layout of a run's checkpoints, and how a save becomes visible atomically.

    ROOT/
      latest                  text: the name of the newest complete checkpoint
      iter_0000200/
        kanana.json           resolved config (model shape, parallel, ...) and train state
        <dist_checkpointing files>   model (+ optimizer, RNG, scheduler) shards
      iter_0000400.partial/   a save in progress (or killed): never pointed at

A save writes `iter_N.partial/`, renames it to `iter_N/` when every rank has
finished, and only then rewrites `latest` (write-temp + os.replace). A crash or
`kill -9` at any moment leaves `latest` on the previous complete checkpoint.
Model-only checkpoints (from the converter, depth up-scaling, pruning) use the
same layout with `kanana.json["contents"] == ["model"]`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Optional

LATEST = "latest"
META = "kanana.json"
PARTIAL = ".partial"
_NAME = re.compile(r"^iter_(\d{7,})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match what was asked for."""


def step_name(step: int) -> str:
    return f"iter_{step:07d}"


def partial_dir(root: Path, step: int) -> Path:
    return Path(root) / (step_name(step) + PARTIAL)


def publish(root: Path, step: int) -> Path:
    """Rename the finished partial directory into place, then move `latest` to it."""
    root = Path(root)
    final = root / step_name(step)
    if final.exists():  # re-saving the same step (e.g. a signal right after a periodic save)
        shutil.rmtree(final)
    os.replace(partial_dir(root, step), final)
    write_latest(root, final.name)
    return final


def write_latest(root: Path, name: str) -> None:
    tmp = Path(root) / f".{LATEST}.tmp"
    tmp.write_text(name + "\n")
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, Path(root) / LATEST)


def resolve(path: Path) -> Path:
    """A checkpoint directory from a checkpoint root (follows `latest`), a training run's
    output_dir (its checkpoints/), or an iter_* directory."""
    path = Path(path)
    if (path / META).exists():
        return path
    if not (path / LATEST).exists() and (path / "checkpoints" / LATEST).exists():
        path = path / "checkpoints"  # a training run's output_dir
    pointer = path / LATEST
    if not pointer.exists():
        raise CheckpointError(f"{path} is neither a checkpoint (no {META}) nor a run directory (no {LATEST} file)")
    target = path / pointer.read_text().strip()
    if not (target / META).exists():
        raise CheckpointError(f"{pointer} points at {target.name}, which is not a complete checkpoint")
    return target


def latest(root: Path) -> Optional[Path]:
    """The newest complete checkpoint under a run root, or None for a fresh run."""
    return resolve(root) if (Path(root) / LATEST).exists() else None


def write_meta(directory: Path, meta: dict[str, Any]) -> None:
    (Path(directory) / META).write_text(json.dumps(meta, indent=2, sort_keys=True))


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META
    if not path.exists():
        raise CheckpointError(f"{directory} has no {META}: not a complete megatron_kanana checkpoint")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def recorded_tokenizer(meta: dict[str, Any], directory: Path) -> str:
    """The tokenizer a checkpoint records, as a path: absolute as a training run records it, or
    relative to the checkpoint directory, where convert / upscale-depth / prune copy it. Never
    resolved against the current directory, which may hold some other `tokenizer/`."""
    recorded = meta.get("tokenizer")
    if not recorded:
        raise CheckpointError(f"{directory}/{META} records no tokenizer; pass one with --tokenizer")
    path = Path(recorded) if Path(recorded).is_absolute() else Path(directory) / recorded
    if not path.exists():
        raise CheckpointError(f"{directory}: its tokenizer {path} is missing; pass one with --tokenizer")
    return str(path)


def check_model_kind(meta: dict[str, Any], directory: Path, allowed: tuple[str, ...], use: str) -> None:
    """The checkpoint holds a model of an `allowed` kind ("lm" — also every checkpoint written
    before kinds were recorded — or "reward"): a reward model's trunk loads into an LM's
    modules without complaint, so the kind is checked, not inferred."""
    kind = meta.get("model_kind", "lm")
    if kind not in allowed:
        raise CheckpointError(f"{directory} holds a {kind} model; {use} needs {' or '.join(allowed)}")


def completed_steps(root: Path) -> list[int]:
    steps = []
    for child in Path(root).iterdir() if Path(root).exists() else []:
        m = _NAME.match(child.name)
        if m and child.is_dir() and (child / META).exists():
            steps.append(int(m.group(1)))
    return sorted(steps)


def prune(root: Path, keep_last: int) -> list[int]:
    """Delete all but the newest `keep_last` complete checkpoints, and stale partials.
    Never deletes what `latest` points at."""
    root = Path(root)
    current = (root / LATEST).read_text().strip() if (root / LATEST).exists() else None
    removed = []
    for s in completed_steps(root)[:-keep_last] if keep_last > 0 else []:
        if step_name(s) != current:
            shutil.rmtree(root / step_name(s))
            removed.append(s)
    for child in root.glob(f"iter_*{PARTIAL}"):
        shutil.rmtree(child, ignore_errors=True)
    return removed
