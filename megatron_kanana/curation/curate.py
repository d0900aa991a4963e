"""`kanana curate`: run the curation pipeline over a directory of JSONL shards.

    kanana curate --config examples/curation/kanana_pipeline.yaml --input DIR --output OUT

Prints the per-stage statistics (also saved to OUT/stats.json). Rerunning the
same command after a crash resumes at shard granularity. With --stage (and --task-id /
--task-count) it runs one task of one pass as a job array: see curation/array.py and
examples/curate.sh; --plan prints each task's shards and bytes.
"""
from __future__ import annotations

import argparse
import json

from megatron_kanana.curation.array import STAGES, plan, run_stage
from megatron_kanana.curation.config import load_pipeline_config
from megatron_kanana.data import job_array
from megatron_kanana.data.job_array import ArrayError, ArrayTask
from megatron_kanana.curation.pipeline import run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="pipeline YAML (see examples/curation/kanana_pipeline.yaml)")
    parser.add_argument("--input", required=True, help="directory of .jsonl / .jsonl.gz shards")
    parser.add_argument("--output", required=True, help="output directory (data/, rejected/, stats.json)")
    parser.add_argument("--workers", type=int, help="override run.workers")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")
    parser.add_argument("--stage", choices=STAGES, help="run one pass of a job array (curation/array.py)")
    job_array.add_arguments(parser)


def _run_array_task(config, args: argparse.Namespace) -> str:
    task = job_array.task_from_args(args) or ArrayTask()
    if args.plan:
        return "\n".join(plan(config, args.input, task.task_count))
    if not args.stage:
        raise ArrayError("--task-id/--task-count need --stage (signatures, buckets, reduce or filter)")
    return run_stage(config, args.input, args.output, args.stage, task)


def run(args: argparse.Namespace) -> int:
    config = load_pipeline_config(args.config)
    if args.workers is not None:
        config = config.replace(run=config.run.replace(workers=args.workers))
    if args.plan or args.stage or args.task_id is not None or args.task_count is not None:
        try:
            print(_run_array_task(config, args))
        except (ValueError, OSError) as e:  # ArrayError, StageOrderError, a missing input
            print(f"kanana curate: error: {e}")
            return 2
        return 0
    stats = run_pipeline(config, args.input, args.output)
    print(json.dumps(stats.to_dict(), indent=1, ensure_ascii=False) if args.json else stats.table())
    return 0
