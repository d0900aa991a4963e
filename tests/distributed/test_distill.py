"""Logit distillation on CPU processes: the vocab-parallel KL at TP=2 equals the
single-process KL (value and gradient); `kanana train` with a `distill` section
lowers a smaller student's validation loss at TP=2; PP=2 gives the TP=2 losses.

One module-scoped teacher (tiny preset, 48 steps at TP=2); students are
`tiny` with 2 layers and a narrower FFN, from a fresh initialisation, or the
teacher's first two layers (`kanana upscale-depth --layers 0-1`) so that two
layouts start from the same weights.
"""
import json
from pathlib import Path

import pytest

from tests.distributed.launch import kanana, torchrun
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed
STUDENT = "model={preset: tiny, num_layers: 2, ffn_hidden_size: 96}"



def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def test_vocab_parallel_kl_matches_single_process(tmp_path):
    torchrun("tests/distributed/kl_worker.py", 2, ["--out", str(tmp_path)], timeout=120)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["kl"] == pytest.approx(got["expected"], rel=1e-5)
        assert got["grad_error"] <= 1e-5 * got["grad_scale"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return tiny_teacher


def distill(root: Path, name: str, teacher: Path, *overrides: str, nproc: int = 2) -> Path:
    run = root / name
    config = write_config(root, run, parallel={"tensor_model_parallel_size": 2})
    proc = kanana("train", str(config), "--nproc", str(nproc), f"distill={{teacher: {teacher}}}",
                  "data.stage_steps={stage1: 12, stage2: 4}", *overrides)
    head = "unfused" if "kernels.lm_head_loss=unfused" in overrides else "fused"
    assert f"LM head {head})" in proc.stdout + proc.stderr  # the path the test means to exercise ran
    check_curve(f"distill_{name}", run)
    return run


def test_distillation_lowers_the_students_validation_loss(teacher):
    root, teacher_run = teacher
    run = distill(root, "student_tp2", teacher_run, STUDENT, "data.eval_interval=2")
    valid = records(run, "validation")
    first, last = valid[0]["losses"], valid[-1]["losses"]
    teacher_last = records(teacher_run, "validation")[-1]["losses"]
    for category in ("en", "ko"):
        assert last[category] < first[category] - 0.1, (category, first, last)
        assert last[category] > teacher_last[category] - 0.05  # it approaches its teacher, not beyond
    train = records(run, "train")
    assert train[-1]["kl_loss"] < train[0]["kl_loss"]
    assert train[0]["loss"] == pytest.approx(train[0]["kl_loss"])  # Kanana: KL alone
    checkpoints = run / "checkpoints"
    saved = json.loads((checkpoints / (checkpoints / "latest").read_text().strip() / "kanana.json").read_text())
    assert saved["model"]["num_layers"] == 2  # the student's checkpoint, not the teacher's


def test_pipeline_parallel_with_fused_head_matches_tensor_parallel_unfused(teacher):
    """PP=2 passes student and teacher activations in one p2p tensor and runs the fused LM
    head (KL and CE from both models' hidden states in vocab chunks, the default); TP=2 runs
    the unfused head (both logits tensors materialised). From the same initial weights their
    losses agree (fp32 reduction order aside)."""
    root, teacher_run = teacher
    init = root / "init"
    kanana("upscale-depth", "--input", str(teacher_run), "--output", str(init), "--layers", "0-1")
    common = ("model={preset: tiny, num_layers: 2}", f"checkpoint.load={init}", "checkpoint.load_optimizer=false",
              "checkpoint.reset_progress=true", "run.exit_after_steps=2",
              "distill.temperature=2.0", "distill.lm_loss_weight=0.5")
    tp = distill(root, "tp2_unfused", teacher_run, *common, "kernels.lm_head_loss=unfused")
    pp = distill(root, "pp2_fused", teacher_run, *common, "parallel.tensor_model_parallel_size=1",
                 "parallel.pipeline_model_parallel_size=2")
    for a, b in zip(records(tp, "train"), records(pp, "train"), strict=True):
        for key in ("loss", "kl_loss", "lm_loss"):
            assert b[key] == pytest.approx(a[key], rel=1e-4), (a["iteration"], key)
    assert len(records(tp, "train")) == 2
