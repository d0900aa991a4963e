"""The curation passes as job arrays, for a cluster (examples/curate.sh submits them).

    kanana curate ... --stage signatures --task-id I --task-count N   # array over shards: pass 1
    kanana curate ... --stage buckets    --task-id B --task-count K   # array over hash buckets
    kanana curate ... --stage reduce                                   # one small job: clusters
    kanana curate ... --stage filter     --task-id I --task-count N   # array over shards: pass 3

Each stage writes the same files and done-markers as the single-machine run
(curation/pipeline.py), so the two produce the same documents and rejects, a rerun redoes
only unfinished shards or buckets, and either kind of run can finish the other's work.
pass 2 is split as datatrove splits MinHash dedup: a bucket task takes every K-th hash-range
partition of every column and writes the pairs of documents that share a hash
(_work/buckets/BBBBB.npz); the reduce unions them. A stage refuses to start before the one
it reads has finished, naming what is missing; each array's task count is pinned in
_work/arrays/STAGE.json (data/job_array.py).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from megatron_kanana.curation import dedup
from megatron_kanana.curation.config import PipelineConfig
from megatron_kanana.curation.pipeline import Layout, layout, write_decisions
from megatron_kanana.data.job_array import ArrayError, ArrayTask, pin_array, plan_lines

STAGES = ("signatures", "buckets", "reduce", "filter")


class StageOrderError(ValueError):
    """A stage started before the stage whose output it reads had finished."""


def _sizes(run: Layout) -> list[int]:
    return [os.path.getsize(s) for s in run.shards]


def _require(paths: list[Path], what: str, stage: str) -> None:
    missing = [p for p in paths if not p.exists()]
    if missing:
        raise StageOrderError(f"--stage {stage}: {len(missing)} of {len(paths)} {what} are not finished "
                              f"(first: {missing[0]}); finish that array first")


def _bucket_file(run: Layout, bucket: int) -> Path:
    return run.work / "buckets" / f"{bucket:05d}.npz"


def _bucket_count(run: Layout) -> int:
    import json

    pin = run.work / "arrays" / "buckets.json"
    if not pin.exists():
        raise StageOrderError(f"--stage reduce: {pin} is missing; run the buckets array first")
    return json.loads(pin.read_text(encoding="utf-8"))["task_count"]


def _buckets(run: Layout, task: ArrayTask) -> str:
    _require(run.sig_done, "signature shards", "buckets")
    out = _bucket_file(run, task.task_id)
    if out.exists():
        return f"bucket {task.task_id}: finished already"
    edges = dedup.bucket_edges(run.sig, run.config.dedup, task.task_id, task.task_count)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **edges)
    os.replace(tmp, out)
    return f"bucket {task.task_id}: {len(edges['a'])} duplicate pairs"


def _reduce(run: Layout) -> str:
    if (run.dedup_dir / "_DONE.json").exists():
        return "reduce: finished already"
    files = [_bucket_file(run, b) for b in range(_bucket_count(run))]
    _require(files, "hash buckets", "reduce")

    def edge_sets():
        for path in files:
            with np.load(path) as data:
                yield {k: data[k] for k in data.files}

    per_shard, stats = dedup.resolve(run.sig, edge_sets())
    write_decisions(run.sig, run.dedup_dir, per_shard, stats)
    return f"reduce: {stats['dedup'].docs_out} of {stats['dedup'].docs_in} documents kept"


def run_stage(config: PipelineConfig, input_dir: str | Path, output: str | Path, stage: str,
              task: ArrayTask) -> str:
    """Run this task's part of `stage`; returns a one-line summary."""
    if stage not in STAGES:
        raise ValueError(f"--stage {stage!r}: expected one of {', '.join(STAGES)}")
    if stage == "reduce" and task.task_count != 1:
        raise ArrayError("--stage reduce is one job, not an array: drop --task-id/--task-count")
    run = layout(config, input_dir, output)
    pin_array(run.work / "arrays" / f"{stage}.json", task.task_count, {"stage": stage})
    if stage == "buckets":
        return _buckets(run, task)
    if stage == "reduce":
        return _reduce(run)
    share = task.share(_sizes(run))
    if stage == "signatures":
        run.run_pass1(share)
        return f"signatures task {task.task_id}: {len(share)} shards"
    _require([run.dedup_dir / "_DONE.json"], "dedup reduce", "filter")
    run.run_pass3(share)
    if all(p.exists() for p in run.done):  # the last filter task to finish writes the totals
        run.write_stats()
    return f"filter task {task.task_id}: {len(share)} shards"


def plan(config: PipelineConfig, input_dir: str | Path, task_count: int) -> list[str]:
    """The dry-run plan of a shard array: per task, its shard count and bytes."""
    from megatron_kanana.curation.shards import discover_shards, shard_name

    shards = discover_shards(Path(input_dir), config.run.shard_glob)
    return plan_lines([shard_name(s, Path(input_dir)) for s in shards], [os.path.getsize(s) for s in shards],
                      task_count)
