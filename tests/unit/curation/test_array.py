"""Curation as job arrays (curation/array.py): tasks run as separate processes give the single-machine
run's documents and rejects; a rerun after a killed task redoes only what it had not finished."""
from __future__ import annotations

import json
import multiprocessing
import os
import sys
from pathlib import Path

import pytest

from megatron_kanana.curation.array import StageOrderError, run_stage
from megatron_kanana.curation.pipeline import run_pipeline
from megatron_kanana.data.job_array import ArrayError, ArrayTask
from tests.unit.curation.corpus import english_doc, korean_doc, write_jsonl
from tests.unit.curation.test_pipeline import EXAMPLE, _config, _corpus, _outputs

SHARD_TASKS, BUCKET_TASKS = 3, 2


def _example():
    return _config(max_doc_bytes=1_000_000)  # what `kanana curate --config EXAMPLE` reads


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    """test_pipeline's two shards plus two whose documents repeat others across shard (and task) lines."""
    root = _corpus(tmp_path_factory.mktemp("in"))
    write_jsonl(root / "c.jsonl", [{"id": "c-dup-of-0", "text": english_doc(0)}, {"id": "c-new", "text": english_doc(77)}]
                + [{"id": f"c{i}", "text": english_doc(100 + i)} for i in range(10)])
    write_jsonl(root / "d.jsonl", [{"id": "d-dup-of-11", "text": korean_doc(1)}, {"id": "d-dup-of-c", "text": english_doc(77)}]
                + [{"id": f"d{i}", "text": korean_doc(200 + i)} for i in range(10)])
    return root


@pytest.fixture(scope="module")
def single(src, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single")
    run_pipeline(_example(), src, out)
    return out


def _cli_task(argv: list[str]) -> None:
    from megatron_kanana.cli import main

    sys.exit(main(argv))


def _array(src: Path, out: Path, stage: str, task_count: int) -> None:
    """Every task of one stage at once, each its own `kanana curate --stage` process (forked: no re-import)."""
    ctx = multiprocessing.get_context("fork")
    argv = ["curate", "--config", EXAMPLE, "--input", str(src), "--output", str(out), "--workers", "1",
            "--stage", stage]
    if stage != "reduce":
        argv += ["--task-count", str(task_count)]
    procs = [ctx.Process(target=_cli_task, args=(argv + ([] if stage == "reduce" else ["--task-id", str(t)]),))
             for t in range(task_count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0, f"{stage} task {procs.index(p)} exited {p.exitcode}"


def _sizes(src: Path) -> list[int]:
    return [os.path.getsize(s) for s in sorted(src.rglob("*.jsonl"))]  # discover_shards' order


def _counts(out: Path) -> dict:
    stats = json.loads((out / "stats.json").read_text())
    return {stage: (s["docs_in"], s["docs_out"], s["rejected"]) for stage, s in stats.items()}


def test_array_run_equals_single_machine_run_and_resumes(src, single, tmp_path):
    out = tmp_path / "array"
    for stage, count in (("signatures", SHARD_TASKS), ("buckets", BUCKET_TASKS), ("reduce", 1),
                         ("filter", SHARD_TASKS)):
        _array(src, out, stage, count)
    assert _outputs(out) == _outputs(single)
    assert "c-dup-of-0" in _outputs(out)["rejected/c.jsonl"] and "d-dup-of-c" in _outputs(out)["rejected/d.jsonl"]
    shares = [ArrayTask(t, SHARD_TASKS).share(_sizes(src)) for t in range(SHARD_TASKS)]
    assert all(shares), f"every task should own a shard here: {shares}"
    assert _counts(out) == _counts(single)

    # A filter task killed mid-shard: its done-marker never written, a half-written .tmp left.
    config = _example()
    (out / "_done" / "d.jsonl.json").unlink()
    (out / "data" / "d.jsonl").unlink()
    (out / "data" / "d.jsonl.tmp").write_text('{"half": ')
    before = {p.name: p.stat().st_mtime_ns for p in (out / "_done").glob("*.json")}
    owner = next(t for t in range(SHARD_TASKS) if 2 in shares[t])  # d.jsonl is the third shard
    run_stage(config, src, out, "filter", ArrayTask(owner, SHARD_TASKS))
    after = {p.name: p.stat().st_mtime_ns for p in (out / "_done").glob("*.json")}
    assert {n: t for n, t in after.items() if n in before} == before and "d.jsonl.json" in after
    assert _outputs(out) == _outputs(single)

    # A bucket task that died: the reduce waits for it, a rerun of that bucket completes the run.
    (out / "_work" / "buckets" / "00001.npz").unlink()
    for p in (out / "_work" / "dedup").iterdir():
        p.unlink()
    with pytest.raises(StageOrderError, match="1 of 2 hash buckets are not finished"):
        run_stage(config, src, out, "reduce", ArrayTask())
    run_stage(config, src, out, "buckets", ArrayTask(1, BUCKET_TASKS))
    run_stage(config, src, out, "reduce", ArrayTask())
    assert _outputs(out) == _outputs(single)


def test_bad_arrays_are_refused(src, tmp_path):
    config = _example()
    out = tmp_path / "out"
    with pytest.raises(StageOrderError, match="signature shards are not finished"):
        run_stage(config, src, out, "buckets", ArrayTask(0, 2))
    run_stage(config, src, out, "signatures", ArrayTask(0, 3))
    with pytest.raises(ArrayError, match="started with --task-count 3, this task has 2"):
        run_stage(config, src, out, "signatures", ArrayTask(1, 2))
    with pytest.raises(ArrayError, match="outside the array of 3 tasks"):
        run_stage(config, src, out, "signatures", ArrayTask(3, 3))
    with pytest.raises(ArrayError, match="one job, not an array"):
        run_stage(config, src, out, "reduce", ArrayTask(0, 2))
    with pytest.raises(StageOrderError, match="dedup reduce"):
        run_stage(config, src, out, "filter", ArrayTask(0, 3))
    other = tmp_path / "other"
    write_jsonl(other / "x.jsonl", [{"text": english_doc(5)}])
    with pytest.raises(ValueError, match="holds a run with other input shards"):  # one output, two arrays
        run_stage(config, other, out, "signatures", ArrayTask(0, 1))


def test_cli_plan_and_one_line_errors(src, tmp_path, capsys):
    from megatron_kanana.cli import main

    base = ["curate", "--config", EXAMPLE, "--input", str(src), "--output", str(tmp_path / "o")]
    assert main(base + ["--plan", "--task-count", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("4 shards") and [ln.split(":")[0].strip() for ln in lines[1:]] == ["task 0", "task 1"]
    assert not (tmp_path / "o").exists()
    assert main(base + ["--stage", "signatures", "--task-id", "5", "--task-count", "2"]) == 2
    assert capsys.readouterr().out.startswith("kanana curate: error: --task-id 5 is outside")
