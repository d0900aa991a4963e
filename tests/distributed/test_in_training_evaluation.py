"""In-training evaluation (an `evaluation` section) end to end, at TP=2 on two processes.

The session's two-stage TP=2 run (conftest.two_stage_tp2, 4 + 2 steps) trains with benchmarks
every 3 steps and at stage ends: its losses must be the stored curve of that run without
evaluation (test_training.py's resumed runs, without evaluation, match it bit for bit),
metrics.jsonl must hold the benchmarks at steps 3, 4 and 6, the number at step 4 must be
`kanana eval`'s on the checkpoint saved then, and `kanana plot` must draw them. (Bad sections, unknown tasks included: tests/unit/evaluation/test_config.py.)
"""
import json
from pathlib import Path

import pytest

from megatron_kanana.training.plot import plot_run
from tests.distributed.conftest import LOCAL_TASKS
from tests.distributed.launch import kanana
from tests.distributed.stored_curves import check_curve

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def run(two_stage_tp2) -> Path:
    return two_stage_tp2[1]


def _evaluations(run: Path) -> list[dict]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "evaluation"]


def test_losses_are_the_run_without_evaluation(run):
    check_curve("pretrain_tp2", run)  # recorded from this config with no evaluation section


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

