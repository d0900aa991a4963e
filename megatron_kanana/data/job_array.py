"""One task of a job array (SLURM's `sbatch --array=0-N`): which shards it owns, and the guard
that keeps every task of a run on one assignment.

    kanana curate ... --task-id "$SLURM_ARRAY_TASK_ID" --task-count "$SLURM_ARRAY_TASK_COUNT"

The shards are split into `task_count` contiguous runs balanced by bytes, so a task's outputs
concatenate in input order and the split depends only on the shard list: the same
(--task-id, --task-count) runs the same shards on SLURM, another scheduler, or a laptop.
The task count is written once into the run's output (`pin_array`); a later task with
another count is refused, since the shards would move between tasks and a finished task's
work would be counted twice or not at all.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


class ArrayError(ValueError):
    """A task id outside its array, a changed task count, or an output shared by two arrays."""


@dataclass(frozen=True)
class ArrayTask:
    task_id: int = 0
    task_count: int = 1

    def __post_init__(self):
        if self.task_count < 1:
            raise ArrayError(f"--task-count must be >= 1, got {self.task_count}")
        if not 0 <= self.task_id < self.task_count:
            raise ArrayError(f"--task-id {self.task_id} is outside the array of {self.task_count} tasks "
                             f"(0..{self.task_count - 1})")

    def share(self, sizes: list[int]) -> range:
        """Indices of the shards this task owns; see `split_by_bytes`."""
        return split_by_bytes(sizes, self.task_count)[self.task_id]


def split_by_bytes(sizes: list[int], task_count: int) -> list[range]:
    """Contiguous index ranges, one per task: a shard goes to the task its middle byte falls in."""
    total = sum(sizes)
    owner, start = [], 0
    for i, size in enumerate(sizes):
        owner.append((2 * start + size) * task_count // (2 * total) if total
                     else i * task_count // max(1, len(sizes)))
        start += size
    counts = Counter(owner)
    bounds = [0] * (task_count + 1)
    for task in range(task_count):
        bounds[task + 1] = bounds[task] + counts[task]
    return [range(bounds[t], bounds[t + 1]) for t in range(task_count)]


def pin_array(path: Path, task_count: int, identity: dict) -> None:
    """Record (task_count, identity) at PATH, or refuse when an earlier task recorded others.
    `identity` says what the array works on (its inputs and settings)."""
    record = {"task_count": task_count, "identity": identity}
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old["identity"] != json.loads(json.dumps(identity)):
            raise ArrayError(f"{path}: this output belongs to another array (other inputs or settings); "
                             "give each array its own output")
        if old["task_count"] != task_count:
            raise ArrayError(f"{path}: the array was started with --task-count {old['task_count']}, "
                             f"this task has {task_count}; the shard assignment would move. Rerun with "
                             f"--task-count {old['task_count']}, or start over in a new output")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # tasks start together: no shared temp name
    tmp.write_text(json.dumps(record, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def plan_lines(names: list[str], sizes: list[int], task_count: int) -> list[str]:
    """The dry-run plan: per task, its shard count, bytes and first/last shard."""
    lines = [f"{len(names)} shards, {sum(sizes) / 1e6:.1f} MB, {task_count} tasks"]
    for task, share in enumerate(split_by_bytes(sizes, task_count)):
        span = f"{names[share[0]]} .. {names[share[-1]]}" if share else "(no shards)"
        lines.append(f"  task {task}: {len(share)} shards, {sum(sizes[i] for i in share) / 1e6:.1f} MB, {span}")
    return lines


def add_arguments(parser) -> None:
    parser.add_argument("--task-id", type=int, default=None,
                        help="this task's index in a job array (SLURM_ARRAY_TASK_ID); needs --task-count")
    parser.add_argument("--task-count", type=int, default=None,
                        help="tasks in the array (SLURM_ARRAY_TASK_COUNT); each takes a contiguous share")
    parser.add_argument("--plan", action="store_true", help="print each task's shards and bytes; run nothing")


def task_from_args(args) -> ArrayTask | None:
    """The ArrayTask the flags name, or None when neither flag is given (the single-machine run)."""
    if args.task_id is None and args.task_count is None:
        return None
    if args.task_count is None:
        raise ArrayError("--task-id needs --task-count")
    return ArrayTask(0 if args.task_id is None else args.task_id, args.task_count)
