"""Fault drills on the local launcher (`kanana train CONFIG --nproc N`, training/launcher.py):
SIGTERM to the launcher saves and exits 75 and leaves no process; SIGKILL of the launcher's
whole process group during an async save leaves no survivor (workers, torchrun, the async
writer and its helpers), the last complete checkpoint stays whole, and the next run resumes
from it and clears the killed save's partial folder."""
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
MANY_STEPS = "data.stage_steps={stage1: 60, stage2: 2}"  # far more than a drill waits for


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("launcher_faults")
    make_inputs(root)
    return root


def start(config, nproc: int, *overrides: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", str(nproc), MANY_STEPS,
           *overrides]
    # its own process group, so the SIGKILL drill can kill that group without hitting pytest
    return subprocess.Popen(cmd, env=cpu_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def watch(launcher: subprocess.Popen, ready, timeout: float = 240) -> set[psutil.Process]:
    """Every descendant seen until `ready()`; fails if the launcher exits first."""
    seen: set[psutil.Process] = set()
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            seen.update(psutil.Process(launcher.pid).children(recursive=True))
        except psutil.NoSuchProcess:
            pass
        if ready():
            return seen
        assert launcher.poll() is None, f"the run ended early:\n{launcher.stdout.read()[-4000:]}"
        time.sleep(0.05)
    raise AssertionError("the run never got ready")


def survivors(processes: set[psutil.Process], within: float = 30.0) -> list[str]:
    deadline = time.time() + within
    while True:
        alive = []
        for p in processes:
            try:
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    alive.append(f"{p.pid}: {' '.join(p.cmdline())[:200]}")
            except psutil.NoSuchProcess:
                pass
        if not alive or time.time() > deadline:
            return alive
        time.sleep(0.2)


def train_steps(run_dir) -> list[int]:
    return [r["iteration"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
            if r.get("kind") == "train"]


def test_sigterm_to_the_launcher_saves_exits_75_and_leaves_no_process(inputs):
    run = inputs / "sigterm"
    launcher = start(write_config(inputs, run), 2)
    seen = watch(launcher, lambda: (run / "metrics.jsonl").exists())
    workers = [p for p in seen if "megatron_kanana.cli" in p.cmdline() and "--nproc" not in p.cmdline()
               and "megatron_kanana.training.launcher" not in p.cmdline()]
    assert len(workers) == 2, [p.cmdline() for p in seen]
    launcher.send_signal(signal.SIGTERM)
    out, _ = launcher.communicate(timeout=180)
    assert launcher.returncode == 75, out[-4000:]
    assert "saving at the next step boundary" in out
    assert "Traceback" not in out and "ChildFailedError" not in out, out[-4000:]
    steps = train_steps(run)
    assert (run / "checkpoints" / "latest").read_text().strip() == f"iter_{steps[-1]:07d}"
    assert not survivors(seen), survivors(seen, 0)


def test_sigkill_of_the_launcher_group_during_a_save_leaves_no_survivor_and_resumes(inputs):
    run = inputs / "sigkill"
    config = write_config(inputs, run, checkpoint={"save_interval": 1, "async_save": True, "keep_last": 0})
    launcher = start(config, 1)
    root = run / "checkpoints"

    def saving() -> bool:  # one complete checkpoint, and the next save under way
        return (root / "latest").exists() and any(root.glob("iter_*.partial"))

    seen = watch(launcher, saving)
    seen.update(psutil.Process(launcher.pid).children(recursive=True))
    os.killpg(launcher.pid, signal.SIGKILL)
    launcher.wait(timeout=30)
    left = survivors(seen)
    assert not left, left
    last = (root / "latest").read_text().strip()
    assert json.loads((root / last / "kanana.json").read_text())["train_state"]["step"] >= 1
    last_step = int(last.removeprefix("iter_"))
    resumed = subprocess.run([sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", "1",
                              MANY_STEPS, "run.exit_after_steps=1"],
                             env=cpu_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-4000:]
    assert f"resumed at step {last_step}" in resumed.stdout + resumed.stderr
    assert train_steps(run)[-1] == last_step + 1
    assert not list(root.glob("iter_*.partial")), "the killed save's partial folder is cleared"
