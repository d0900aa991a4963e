"""`kanana preprocess` as one task of a job array: this task's input files, one dataset each.

    kanana preprocess --input 'data/*.jsonl.zst' --tokenizer tok/ --output-prefix out/web \
        --task-id "$SLURM_ARRAY_TASK_ID" --task-count "$SLURM_ARRAY_TASK_COUNT"
    kanana preprocess-merge --input out/web.parts --output-prefix out/web     # after every task

Each input file is one shard; a task owns a contiguous, byte-balanced run of them
(data/job_array.py) and tokenizes each into PREFIX.parts/NNNNNN.bin/.idx with the same code
as a single-machine run. A shard is finished when its .idx exists (or its .empty marker, for
a file without tokens), so a rerun of a failed task redoes only the shards it had not
finished. Merging the parts in shard order gives the bytes a single-machine run writes.
PREFIX.parts/array.json pins the inputs, settings and task count.
"""
from __future__ import annotations

import glob
import json
import os
import shutil
from pathlib import Path

from megatron_kanana.data.indexed_datasets import DatasetError, EmptyDatasetError
from megatron_kanana.data.job_array import ArrayTask, pin_array, plan_lines
from megatron_kanana.data.jsonl_reader import expand_inputs
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.log import get_logger

log = get_logger(__name__)
PIN = "array.json"


def parts_dir(output_prefix: str) -> Path:
    return Path(output_prefix + ".parts")


def _part(parts: Path, index: int) -> str:
    return str(parts / f"{index:06d}")


def _identity(files: list[str], tokenizer_path: str, json_key: str, append_eod: bool) -> dict:
    return {"files": [os.path.abspath(f) for f in files], "sizes": [os.path.getsize(f) for f in files],
            "tokenizer": load_tokenizer(tokenizer_path).fingerprint, "json_key": json_key, "append_eod": append_eod}


def plan(inputs: list[str], task_count: int) -> list[str]:
    files = expand_inputs(inputs)
    return plan_lines(files, [os.path.getsize(f) for f in files], task_count)


def run_task(inputs: list[str], tokenizer_path: str, output_prefix: str, task: ArrayTask,
             workers: int = 1, json_key: str = "text", append_eod: bool = False, strict: bool = False,
             shard_mb: float | None = None) -> list[str]:
    """Tokenize this task's unfinished shards; returns one summary line per shard done now."""
    from megatron_kanana.data.preprocess import preprocess

    files = expand_inputs(inputs)
    parts = parts_dir(output_prefix)
    if os.path.exists(output_prefix + ".idx"):
        raise FileExistsError(f"{output_prefix}.idx exists: this array was merged already")
    pin_array(parts / PIN, task.task_count, _identity(files, tokenizer_path, json_key, append_eod))
    done = []
    for i in task.share([os.path.getsize(f) for f in files]):
        part = _part(parts, i)
        if os.path.exists(part + ".idx") or os.path.exists(part + ".empty"):
            continue
        for stale in glob.glob(part + ".tmp-*"):  # a killed attempt's temporary directory
            shutil.rmtree(stale, ignore_errors=True)
        try:
            result = preprocess([files[i]], tokenizer_path, part, workers, json_key, append_eod, strict,
                                overwrite=True, shard_mb=shard_mb)
            done.append(f"shard {i}: {result.summary()}")
        except EmptyDatasetError:
            Path(part + ".empty").write_text(files[i] + "\n", encoding="utf-8")
            done.append(f"shard {i}: {files[i]} holds no tokens")
    return done


def array_parts(parts: Path) -> list[str]:
    """The dataset prefixes of a finished array, in shard order; names the unfinished shards otherwise."""
    record = json.loads((parts / PIN).read_text(encoding="utf-8"))
    files = record["identity"]["files"]
    missing = [i for i in range(len(files))
               if not os.path.exists(_part(parts, i) + ".idx") and not os.path.exists(_part(parts, i) + ".empty")]
    if missing:
        shown = ", ".join(f"{i} ({files[i]})" for i in missing[:5])
        raise DatasetError(f"{parts}: {len(missing)} of {len(files)} shards are not finished: {shown}"
                           f"{' ...' if len(missing) > 5 else ''}; rerun their tasks first")
    return [_part(parts, i) for i in range(len(files)) if os.path.exists(_part(parts, i) + ".idx")]


def run(args) -> int:
    """`kanana preprocess` with --task-id/--task-count or --plan (see preprocess.add_arguments)."""
    from megatron_kanana.data.job_array import task_from_args

    try:
        task = task_from_args(args) or ArrayTask()
        if args.plan:
            print("\n".join(plan(args.input, task.task_count)))
            return 0
        lines = run_task(args.input, args.tokenizer, args.output_prefix, task, args.workers, args.json_key,
                         args.append_eod, args.strict, args.shard_mb)
    except (ValueError, FileExistsError, OSError) as e:
        print(f"kanana preprocess: error: {e}")
        return 1
    print("\n".join(lines) if lines else f"task {task.task_id}: every shard was finished already")
    return 0
