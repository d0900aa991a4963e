"""`kanana preprocess` as a job array (data/preprocess_array.py, data/job_array.py): N tasks run as
separate processes, merged, give the single-machine run's bytes; reruns redo only what failed."""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

from megatron_kanana.data.indexed_datasets import DatasetError
from megatron_kanana.data.job_array import ArrayError, ArrayTask, split_by_bytes
from megatron_kanana.data.preprocess import preprocess
from megatron_kanana.data.preprocess_array import parts_dir, plan, run_task
from megatron_kanana.data.preprocess_merge import merge_datasets


def test_split_is_contiguous_complete_and_byte_balanced():
    sizes = [5, 1, 1, 1, 8, 2, 2, 0, 4]
    shares = split_by_bytes(sizes, 3)
    assert [i for s in shares for i in s] == list(range(len(sizes)))
    assert [sum(sizes[i] for i in s) for s in shares] == [8, 8, 8]
    assert split_by_bytes([1, 1], 4) == [range(0, 0), range(0, 1), range(1, 1), range(1, 2)]
    assert split_by_bytes([0, 0, 0], 2) == [range(0, 2), range(2, 3)]


def test_task_id_outside_the_array_is_refused():
    with pytest.raises(ArrayError, match="outside the array of 4 tasks"):
        ArrayTask(4, 4)
    with pytest.raises(ArrayError, match="--task-count must be >= 1"):
        ArrayTask(0, 0)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, bilingual_jsonl) -> list[str]:
    """The bilingual file cut into four shard files of uneven size, the last gzipped."""
    import gzip

    lines = Path(bilingual_jsonl).read_text(encoding="utf-8").splitlines(keepends=True)
    out = tmp_path_factory.mktemp("shards")
    cuts = [0, 10, 80, 150, len(lines)]
    paths = []
    for n, (a, b) in enumerate(zip(cuts, cuts[1:])):
        path = out / f"s{n}.jsonl"
        path.write_text("".join(lines[a:b]), encoding="utf-8")
        paths.append(str(path))
    with gzip.open(paths[-1] + ".gz", "wt", encoding="utf-8") as f:
        f.write(Path(paths[-1]).read_text(encoding="utf-8"))
    os.remove(paths[-1])
    paths[-1] += ".gz"
    return paths


def _cli_task(argv: list[str]) -> None:
    from megatron_kanana.cli import main

    sys.exit(main(argv))


def _run_array(shards, tokenizer, prefix, task_count) -> None:
    """Every task at once, each its own process running `kanana preprocess --task-id T`. Forked, not
    spawned: a fresh interpreter would spend ~8 CPU-seconds importing torch per task."""
    ctx = multiprocessing.get_context("fork")
    argv = ["preprocess", "--input", *shards, "--tokenizer", tokenizer, "--output-prefix", prefix,
            "--workers", "1", "--append-eod", "--task-count", str(task_count)]
    procs = [ctx.Process(target=_cli_task, args=(argv + ["--task-id", str(t)],)) for t in range(task_count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"task {procs.index(p)} exited {p.exitcode}"


def _bytes(prefix: str) -> tuple[bytes, bytes]:
    return Path(prefix + ".bin").read_bytes(), Path(prefix + ".idx").read_bytes()


def test_array_of_processes_merges_to_the_single_machine_bytes(tmp_path, shards, llama3_tokenizer):
    preprocess(shards, llama3_tokenizer, str(tmp_path / "single"), workers=2, append_eod=True)
    prefix = str(tmp_path / "array")
    _run_array(shards, llama3_tokenizer, prefix, task_count=2)
    with pytest.raises(DatasetError, match="1 of 4 shards are not finished: 2"):
        os.rename(prefix + ".parts/000002.idx", prefix + ".parts/000002.idx.x")
        merge_datasets([prefix + ".parts"], prefix)
    os.rename(prefix + ".parts/000002.idx.x", prefix + ".parts/000002.idx")
    merge_datasets([prefix + ".parts"], prefix)
    assert _bytes(prefix) == _bytes(str(tmp_path / "single"))


def test_rerun_after_a_killed_task_redoes_only_its_unfinished_shard(tmp_path, shards, hf_tokenizer):
    prefix = str(tmp_path / "out")
    for t in range(2):
        run_task(shards, hf_tokenizer, prefix, ArrayTask(t, 2), append_eod=True)
    parts = parts_dir(prefix)
    merge_datasets([str(parts)], str(tmp_path / "first"))
    # What a task killed while tokenizing shard 3 leaves: no 000003.idx, a temporary directory.
    os.remove(parts / "000003.idx")
    os.remove(parts / "000003.bin")
    (parts / "000003.tmp-12345").mkdir()
    (parts / "000003.tmp-12345" / "part-000000.bin").write_bytes(b"half")
    before = {p.name: p.stat().st_mtime_ns for p in parts.glob("*.idx")}
    owner = next(t for t in range(2) if 3 in ArrayTask(t, 2).share([os.path.getsize(s) for s in shards]))
    redone = run_task(shards, hf_tokenizer, prefix, ArrayTask(owner, 2), append_eod=True)
    assert [line.split(":")[0] for line in redone] == ["shard 3"]
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("*.idx") if p.name in before} == before
    assert not list(parts.glob("*.tmp-*"))
    merge_datasets([str(parts)], prefix)
    assert _bytes(prefix) == _bytes(str(tmp_path / "first"))


def test_changed_task_count_and_shared_prefix_are_refused(tmp_path, shards, hf_tokenizer):
    prefix = str(tmp_path / "out")
    run_task(shards[:2], hf_tokenizer, prefix, ArrayTask(0, 2))
    with pytest.raises(ArrayError, match="started with --task-count 2, this task has 3"):
        run_task(shards[:2], hf_tokenizer, prefix, ArrayTask(1, 3))
    with pytest.raises(ArrayError, match="belongs to another array"):
        run_task(shards[2:], hf_tokenizer, prefix, ArrayTask(0, 2))
    pinned = json.loads((parts_dir(prefix) / "array.json").read_text())
    assert pinned["task_count"] == 2


def test_plan_lists_tasks_shards_and_bytes(shards):
    lines = plan(shards, 2)
    assert lines[0].startswith("4 shards") and lines[0].endswith("2 tasks")
    assert [line.split(":")[0].strip() for line in lines[1:]] == ["task 0", "task 1"]
    assert sum(int(line.split(": ")[1].split()[0]) for line in lines[1:]) == 4
