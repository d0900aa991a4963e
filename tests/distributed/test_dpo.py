"""DPO on CPU processes: the vocab-parallel sequence log-probs, DPO loss and policy-logit
gradient at TP=2 equal the single-process full-vocabulary computation; `kanana train` with a
`dpo` section (pref-synthetic → pref-preprocess → DPO from a pre-trained tiny checkpoint at
TP=2, the same checkpoint as frozen reference) lowers the loss and wins held-out pairs."""
import json
import math
from pathlib import Path

import pytest

from tests.distributed.launch import kanana, torchrun
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import write_config

pytestmark = pytest.mark.distributed


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == kind]


def test_vocab_parallel_dpo_matches_single_process(tmp_path):
    torchrun("tests/distributed/dpo_worker.py", 2, ["--out", str(tmp_path)], timeout=120)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert got["loss"] == pytest.approx(got["expected"], rel=1e-5)
        assert got["logps_error"] <= 1e-5 * got["logps_scale"]
        assert got["grad_scale"] > 0 and got["grad_error"] <= 1e-5 * got["grad_scale"]


def dpo_run(root: Path, name: str, *overrides: str, steps: int = 8) -> Path:
    run = root / name
    config = write_config(root, run, parallel={"tensor_model_parallel_size": 2},
                          checkpoint={"load": str(root / "base"), "load_optimizer": False},
                          data={"mixture": None, "eval_interval": 4, "micro_batch_size": 4, "global_batch_size": 8},
                          schedule={"lr": 1e-3, "min_lr": 1e-5, "warmup_steps": 1},
                          dpo={"data_prefixes": [str(root / "pref_train")], "valid_prefixes": [str(root / "pref_valid")],
                               "seq_length": 64, "beta": 0.1, "train_steps": steps})
    kanana("train", str(config), "--nproc", "2", *overrides)
    return run


@pytest.fixture(scope="module")
def tp2_run(preference_root) -> Path:
    run = dpo_run(preference_root, "dpo_tp2")
    check_curve("dpo_tp2", run)
    return run


def test_dpo_lowers_the_loss_and_wins_held_out_pairs(tp2_run):
    run = tp2_run
    train = records(run, "train")
    assert len(train) == 8
    # step 1: the policy is the reference (both loaded from base), so every margin is 0
    assert train[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert train[0]["reward_margin"] == pytest.approx(0, abs=1e-5)
    assert sum(r["loss"] for r in train[-3:]) / 3 < 0.6
    assert train[-1]["reward_margin"] > 0.2 and train[-1]["preference_accuracy"] > 0.5
    valid = [r["losses"] for r in records(run, "validation")]
    assert [set(v) for v in valid] == [{"dpo loss", "preference accuracy", "reward margin"}] * 2
    # held out: from ties (accuracy 0 at the start, margin 0) to winning most pairs
    assert valid[-1]["preference accuracy"] > 0.5 and valid[-1]["dpo loss"] < math.log(2) - 0.1
    saved = json.loads(((run / "checkpoints") / (run / "checkpoints" / "latest").read_text().strip() / "kanana.json")
                       .read_text())
    assert saved["train_state"]["step"] == 8
    # `kanana pref-eval` on the saved policy against the base reproduces the last validation
    # (accuracy, and the margin before β) from checkpoints alone, at TP=1 in one process
    root = run.parent
    got = json.loads(kanana("pref-eval", "--policy", str(run), "--reference", str(root / "base"), "--pairs",
                            str(root / "pref_valid"), "--json").stdout.strip().splitlines()[-1])
    assert got["preference_accuracy"] == pytest.approx(valid[-1]["preference accuracy"], abs=1e-6)
    assert 0.1 * got["mean_margin"] == pytest.approx(valid[-1]["reward margin"], rel=1e-4)


def test_pipeline_parallel_matches_tensor_parallel(preference_root, tp2_run):
    """PP=2 sends policy and reference activations in one p2p tensor; from the same
    checkpoint its first steps equal TP=2's (fp32 reduction order aside)."""
    pp = dpo_run(preference_root, "dpo_pp2", "run.exit_after_steps=2", "parallel.tensor_model_parallel_size=1",
                 "parallel.pipeline_model_parallel_size=2")
    check_curve("dpo_pp2", pp)
    tp = records(tp2_run, "train")[:2]
    for a, b in zip(tp, records(pp, "train"), strict=True):
        for key in ("loss", "sft_loss", "reward_margin", "chosen_reward", "preference_accuracy"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["iteration"], key)
    assert tp[1]["reward_margin"] > 0.01  # step 2 follows an update: the policy has left the reference
