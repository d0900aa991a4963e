"""In-training evaluation (an `evaluation` section) end to end, at TP=2 on two processes.

The tiny model trains the two-stage run of test_training.py (4 + 2 steps) with benchmarks
every 3 steps and at stage ends: its losses must be the stored curve of that run without
evaluation (bit for bit), metrics.jsonl must hold the benchmarks at steps 3, 4 and 6, the
number at step 4 must be `kanana eval`'s on the checkpoint saved then, and `kanana plot`
must draw them. (Bad sections, unknown tasks included: tests/unit/evaluation/test_config.py.)
"""
import json
from pathlib import Path

import pytest

from megatron_kanana.training.plot import plot_run
from tests.distributed.launch import REPO, kanana
from tests.distributed.stored_curves import check_curve
from tests.distributed.training_setup import make_inputs, write_config

pytestmark = pytest.mark.distributed
LOCAL_TASKS = str(REPO / "megatron_kanana" / "evaluation" / "local_tasks")
STEPS = "data.stage_steps={stage1: 4, stage2: 2}"
EVALUATION = {"tasks": ["kanana_kmmlu_mini", "kanana_ppl_mini"], "interval": 3, "at_stage_end": True, "limit": 4,
              "batch_size": 4, "bootstrap_iters": 10, "include_path": [LOCAL_TASKS]}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("evaltrain")
    make_inputs(root)
    return root


@pytest.fixture(scope="module")
def run(inputs) -> Path:
    run = inputs / "evaluated"
    config = write_config(inputs, run, parallel={"tensor_model_parallel_size": 2}, evaluation=EVALUATION)
    kanana("train", str(config), "--nproc", "2", STEPS, timeout=300)
    return run


def _evaluations(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "evaluation"]


def test_losses_are_the_run_without_evaluation(run):
    check_curve("pretrain_tp2", run)  # recorded by test_training.py's run of this config with no evaluation


def test_benchmarks_logged_at_the_interval_and_stage_ends(run):
    evaluations = _evaluations(run)
    assert [r["iteration"] for r in evaluations] == [3, 4, 6]
    for record in evaluations:
        kmmlu, ppl = record["results"]["kanana_kmmlu_mini"], record["results"]["kanana_ppl_mini"]
        assert 0.0 <= kmmlu["acc"] <= 1.0 and "acc_stderr" in kmmlu
        assert ppl["word_perplexity"] > 1.0 and ppl["bits_per_byte"] > 0.0
    perplexities = [r["results"]["kanana_ppl_mini"]["word_perplexity"] for r in evaluations]
    assert len(set(perplexities)) == 3  # each evaluation scored the model of its own step


def test_a_number_equals_kanana_eval_on_the_checkpoint_of_that_step(run, tmp_path):
    at_step_4 = _evaluations(run)[1]["results"]["kanana_ppl_mini"]
    kanana("eval", str(run / "checkpoints" / "iter_0000004"), "--tasks", "kanana_ppl_mini", "--include-path",
           LOCAL_TASKS, "--limit", "4", "--bootstrap-iters", "10", "--output", str(tmp_path / "r.json"))
    offline = json.loads((tmp_path / "r.json").read_text())["results"]["kanana_ppl_mini"]
    assert at_step_4["word_perplexity"] == pytest.approx(offline["word_perplexity,none"], rel=1e-5)


def test_kanana_plot_draws_each_task(run, tmp_path):
    names = {p.name for p in plot_run(run, tmp_path)}
    assert {"eval_kanana_kmmlu_mini.png", "eval_kanana_ppl_mini.png", "loss.png"} <= names

