"""Faults during `kanana train`: NaN losses are skipped and counted, too many in a row
stop the run with a checkpoint of the last good state; SIGUSR1 (SLURM preemption)
saves and exits with status 75, and the run resumes from there."""
import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from tests.distributed.launch import cpu_env
from tests.distributed.training_setup import make_inputs, write_config

pytestmark = pytest.mark.distributed
STEPS = "data.stage_steps={stage1: 4, stage2: 2}"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    make_inputs(root)
    return root


def records(run_dir, kind="train"):
    return [r for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if r.get("kind") == kind]


def test_nan_steps_are_skipped_then_divergence_stops_with_a_checkpoint(inputs):
    run = inputs / "nan"
    config = write_config(inputs, run, run={"max_consecutive_nan_steps": 2, "inject_nan_at_steps": [2, 4, 5]})
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", "1", STEPS]
    proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "training diverged: 2 consecutive steps" in proc.stdout + proc.stderr
    ckpt = run / "checkpoints" / (run / "checkpoints" / "latest").read_text().strip()
    state = json.loads((ckpt / "kanana.json").read_text())["train_state"]
    assert state["step"] == 4  # step 5 raised before the optimizer step: the last good state is after step 4
    assert state["nan_guard"]["skipped_total"] == 3
    logged = {r["iteration"]: r for r in records(run)}
    assert logged[2]["skipped_iterations"] == 1 and logged[3]["skipped_iterations"] == 0
    assert logged[3]["skipped_total"] == 1 and logged[4]["skipped_total"] == 2


def test_sigusr1_saves_exits_75_and_resumes(inputs):
    run = inputs / "preempted"
    config = write_config(inputs, run)
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", "2", STEPS]
    agent = subprocess.Popen(cmd, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (run / "metrics.jsonl").exists():
        time.sleep(0.05)
    assert (run / "metrics.jsonl").exists(), "training never started"
    # SLURM signals every task; here the workers are the agent's (torchrun's) children.
    workers = []
    for p in psutil.Process(agent.pid).children(recursive=True):
        args = p.cmdline()
        if "megatron_kanana.cli" in args and "--nproc" not in args and "megatron_kanana.training.launcher" not in args:
            workers.append(p)
    assert len(workers) == 2, [p.cmdline() for p in workers]
    for worker in workers:
        os.kill(worker.pid, signal.SIGUSR1)
    out, _ = agent.communicate(timeout=240)
    assert "saving at the next step boundary" in out
    steps = [r["iteration"] for r in records(run)]
    assert steps and steps[-1] < 6, "the signal should stop the run early"
    latest = (run / "checkpoints" / "latest").read_text().strip()
    assert latest == f"iter_{steps[-1]:07d}"
    assert agent.returncode == 75, out[-3000:]  # "stopped to be resumed", through torchrun
    resumed = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert [r["iteration"] for r in records(run)][-1] == 6
