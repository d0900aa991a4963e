"""`kanana train` end to end on CPU processes: exact resume across a stage
boundary, resume of an old checkpoint, resume at another parallel layout, a trainer
built in process. (A kill -9 in the middle of a save: test_launcher_faults.py.)

The inputs (tokenizer, Korean/English datasets, two-stage mixture) and the straight
TP=2 run the resumes must match are the session's (conftest.two_stage_tp2; that run
also benchmarks in training, which must not move a bit); every run is a real torchrun
of the tiny preset, 4 + 2 steps.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.distributed.launch import cpu_env, python
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed
STEPS = ["data.stage_steps={stage1: 4, stage2: 2}"]


@pytest.fixture(scope="module")
def inputs(two_stage_tp2) -> Path:
    return two_stage_tp2[0]


@pytest.fixture(scope="module")
def straight(two_stage_tp2) -> Path:
    return two_stage_tp2[1]


def train(config: Path, *overrides: str, nproc: int = 2, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "train", str(config), "--nproc", str(nproc), *STEPS, *overrides]
    proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def losses(run_dir: Path) -> list[tuple[int, float]]:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    by_step = {r["iteration"]: r["loss"] for r in records if r.get("kind") == "train"}
    return sorted(by_step.items())


def test_resume_is_bit_exact_across_a_stage_boundary(inputs, straight):
    run = inputs / "resumed"
    config = write_config(inputs, run, parallel={"tensor_model_parallel_size": 2})
    train(config, "run.exit_after_steps=3")
    first = losses(run)
    assert [s for s, _ in first] == [1, 2, 3]
    assert json.loads((run / "checkpoints" / "iter_0000003" / "kanana.json").read_text())["train_state"]["step"] == 3
    train(config)  # resumes at step 3 (stage 1), crosses into stage 2 at step 4
    expected = losses(straight)
    assert len(expected) == 6
    assert losses(run) == expected  # float equality: same bits
    assert expected[-1][1] < expected[0][1]
    validation = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if '"validation"' in l]
    assert {"en", "ko"} <= set(validation[-1]["losses"])


def test_a_checkpoint_from_before_the_objective_refactor_resumes_bit_exactly(inputs, straight):
    """fixtures/pretrain_tp2_step3: step 3 of this straight run, saved by the trainer as it was
    before training objectives became modules (fixtures/README.md). Resumed today, steps 4-6
    (across the stage boundary) are the straight run's, bit for bit."""
    import shutil

    run = inputs / "old_checkpoint"
    shutil.copytree(Path(__file__).parent / "fixtures" / "pretrain_tp2_step3" / "checkpoints", run / "checkpoints")
    train(write_config(inputs, run, parallel={"tensor_model_parallel_size": 2}))
    assert losses(run) == losses(straight)[3:]


IN_PROCESS = """
import sys
from megatron_kanana.config.root import load_config
from megatron_kanana.training.trainer import build_trainer

trainer = build_trainer(load_config(sys.argv[1], sys.argv[2:]))
try:
    assert trainer.train() == "done"
finally:
    trainer.close()
"""


def test_a_trainer_built_in_process_trains_the_stored_curve(inputs):
    """build_trainer composes runtime → objective → model → optimizer → trainer without the CLI;
    one process, the configuration of the session's base run (conftest.preference_root)."""
    run = inputs / "in_process"
    python(["-c", IN_PROCESS, str(write_config(inputs, run)), *STEPS])
    check_curve("pretrain_base_tp1", run)


def test_resume_at_another_layout(inputs, straight):
    """Saved at TP=2, resumed at PP=2: model and optimizer reshard; the next losses
    match the straight TP=2 run up to fp32 reduction order."""
    run = inputs / "reshard"
    config = write_config(inputs, run, parallel={"tensor_model_parallel_size": 2})
    train(config, "run.exit_after_steps=3")
    train(config, "parallel.tensor_model_parallel_size=1", "parallel.pipeline_model_parallel_size=2")
    got, expected = dict(losses(run)), dict(losses(straight))
    for step in (4, 5, 6):
        assert got[step] == pytest.approx(expected[step], rel=1e-4), step
    check_curve("pretrain_tp2_resumed_pp2", run)  # steps 4-6 (both stages) at PP=2
