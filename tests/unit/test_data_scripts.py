"""examples/curate.sh and examples/preprocess.sh: they parse, and DRY_RUN=1 prints the array plan and
the chained sbatch lines without a cluster."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")


def _dry_run(script: str, **env) -> str:
    result = subprocess.run([BASH, str(REPO / "examples" / script)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, **env})
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.fixture
def shards(tmp_path) -> Path:
    for name, n in (("a.jsonl", 3), ("b.jsonl", 1), ("c.jsonl", 2)):
        with open(tmp_path / name, "w", encoding="utf-8") as f:
            for i in range(n):
                f.write(json.dumps({"text": f"document {i} of {name} " * 20}) + "\n")
    return tmp_path


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_curate_dry_run_prints_plan_and_four_chained_jobs(shards, tmp_path):
    out = _dry_run("curate.sh", INPUT=str(shards), OUTPUT=str(tmp_path / "out"), TASKS="2", BUCKETS="3")
    assert "3 shards" in out and "task 0: 1 shards" in out and "task 1: 2 shards" in out
    sbatch = [line for line in out.splitlines() if line.startswith("sbatch ")]
    assert [line.split("--stage ")[1].split()[0] for line in sbatch] == ["signatures", "buckets", "reduce", "filter"]
    assert "--array=0-2" in sbatch[1] and "--task-count 3" in sbatch[1] and "--array" not in sbatch[2]
    assert all("--dependency=afterok:<" in line for line in sbatch[1:])
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_preprocess_dry_run_prints_plan_array_and_merge(shards, tmp_path):
    out = _dry_run("preprocess.sh", INPUT=f"{shards}/*.jsonl", TOKENIZER=str(tmp_path / "tok.json"),
                   OUTPUT_PREFIX=str(tmp_path / "tokens" / "web"), TASKS="3")
    assert "3 shards" in out and "3 tasks" in out
    sbatch = [line for line in out.splitlines() if line.startswith("sbatch ")]
    assert "--array=0-2" in sbatch[0] and "--task-id $SLURM_ARRAY_TASK_ID --task-count 3" in sbatch[0]
    assert "preprocess-merge" in sbatch[1] and "web.parts" in sbatch[1] and "--dependency=afterok:" in sbatch[1]
    assert not (tmp_path / "tokens").exists()
