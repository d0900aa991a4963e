"""Checkpoints across megatron-core versions: a training checkpoint written by the Python 3.11
set (megatron-core 0.16.1) resumes bit-exactly in the Python 3.12 set (0.19.x), and the 0.16.1
set refuses 0.19's checkpoint with an error naming both versions.

Runs in `make test-py312`, which names the 3.11 set's interpreter in KANANA_OLD_PYTHON, so the
old checkpoint is produced in the same CI run; skipped elsewhere."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from megatron_kanana.checkpointing import layout
from megatron_kanana.mcore import compat
from tests.distributed.launch import cpu_env
from tests.distributed.training_setup import make_inputs, write_config

OLD_PYTHON = os.environ.get("KANANA_OLD_PYTHON")
pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not OLD_PYTHON or compat.VERSION[:2] < (0, 17),
                                 reason="needs megatron-core >= 0.17 here and KANANA_OLD_PYTHON (the 0.16.1 set)")]
STEPS = "data.stage_steps={stage1: 4, stage2: 2}"


def train(python: str, config, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [python, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", "2", STEPS, *overrides]
    return subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=400)


def losses(run_dir) -> dict[int, float]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["iteration"]: r["loss"] for r in records if r.get("kind") == "train"}


def test_old_checkpoint_resumes_bit_exactly_and_new_one_is_refused_by_old(tmp_path):
    make_inputs(tmp_path)
    old_run, new_run = tmp_path / "old", tmp_path / "new"
    tp2 = {"tensor_model_parallel_size": 2}
    proc = train(OLD_PYTHON, write_config(tmp_path, old_run, parallel=tp2, checkpoint={"save_interval": 3}))
    assert proc.returncode == 0, proc.stderr[-4000:]
    old_meta = layout.read_meta(old_run / "checkpoints" / "iter_0000003")
    assert old_meta["train_state"]["step"] == 3
    assert (old_run / "checkpoints" / "iter_0000003" / compat.COMMON_STATE).exists()  # 0.16's layout

    # the new set continues the old run's step-3 checkpoint as its own run
    shutil.copytree(old_run / "checkpoints" / "iter_0000003", new_run / "checkpoints" / "iter_0000003")
    layout.write_latest(new_run / "checkpoints", "iter_0000003")
    config = write_config(tmp_path, new_run, parallel=tp2)
    proc = train(sys.executable, config)
    assert proc.returncode == 0, proc.stderr[-4000:]
    old, new = losses(old_run), losses(new_run)
    assert sorted(new) == [4, 5, 6]
    assert {s: old[s] for s in new} == new  # float equality: same bits after the version change

    # the reverse direction: 0.16.1 meets the 0.19 checkpoint of step 6
    assert not (new_run / "checkpoints" / "iter_0000006" / compat.COMMON_STATE).exists()
    proc = train(OLD_PYTHON, config, "data.stage_steps={stage1: 4, stage2: 4}")
    assert proc.returncode != 0
    assert "saved by megatron-core 0.17 or newer" in proc.stderr and "megatron-core 0.16.1 cannot read" in proc.stderr
    assert "Traceback" not in proc.stderr.splitlines()[-1]
