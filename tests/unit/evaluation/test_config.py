"""The evaluation section of `kanana train`: bad values exit 2 naming the key, a run whose model
lm-eval cannot score is refused, and task names are checked before any process trains (an
unknown one with the closest names)."""
import pytest
import yaml

from megatron_kanana.cli import main
from megatron_kanana.evaluation.config import EvaluationConfig
from megatron_kanana.training import launcher

BASE = {"run": {"output_dir": "run"}, "model": {"preset": "tiny"},
        "data": {"mixture": "m.yaml", "tokenizer": "t.json", "seq_length": 64}}


def write(tmp_path, evaluation, **sections) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections, "evaluation": evaluation}))
    return str(path)


def _error(capsys, *argv) -> str:
    assert main(["train", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kanana train: "), err
    return err[0]


@pytest.mark.parametrize("values,needle", [
    ({"tasks": []}, "evaluation.tasks: name at least one lm-eval task"),
    ({"tasks": "kmmlu"}, "evaluation.tasks: expected a list"),
    ({"tasks": ["kmmlu"], "interval": -1}, "evaluation.interval: must be >= 0"),
    ({"tasks": ["kmmlu"], "at_stage_end": False}, "evaluation.interval: 0 with at_stage_end false never evaluates"),
    ({"tasks": ["kmmlu"], "limit": 0}, "evaluation.limit: must be >= 1 documents or a fraction"),
    ({"tasks": ["kmmlu"], "num_fewshot": -1}, "evaluation.num_fewshot: must be >= 0"),
    ({"tasks": ["kmmlu"], "batch_size": 0}, "evaluation.batch_size: must be >= 1"),
    ({"tasks": ["kmmlu"], "every": 100}, "unknown key(s) evaluation.every"),
    ({"tasks": ["kmmlu"], "max_length": 4096}, "evaluation.max_length (4096) exceeds model.max_position_embeddings"),
])
def test_bad_values_exit_2_naming_the_key(tmp_path, capsys, values, needle):
    assert needle in _error(capsys, write(tmp_path, values), "--dry-run")


def test_a_reward_model_cannot_be_benchmarked(tmp_path, capsys):
    reward = {"data_prefixes": ["pairs"], "seq_length": 64}
    data = {**BASE["data"], "mixture": None, "micro_batch_size": 2, "global_batch_size": 8}
    config = write(tmp_path, {"tasks": ["kmmlu"]}, data=data, reward=reward)
    assert "evaluation: this run trains a reward model" in _error(capsys, config, "--dry-run")


@pytest.mark.parametrize("override,needle", [
    ("parallel.sequence_parallel=true", "parallel.sequence_parallel cannot run"),
    ("parallel.virtual_pipeline_model_parallel_size=2", "virtual_pipeline_model_parallel_size > 1 cannot run"),
])
def test_layouts_that_need_fixed_sequence_shapes_are_refused(tmp_path, capsys, override, needle):
    layout = {"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2}
    # the unfused loss: sequence parallelism with the fused LM head is refused first, naming that
    line = _error(capsys, write(tmp_path, {"tasks": ["kmmlu"]}, parallel=layout), override,
                  "kernels.lm_head_loss=unfused", "--dry-run")
    assert needle in line and "`kanana eval`" in line


def test_include_path_resolves_against_the_config_file(tmp_path, capsys):
    assert main(["train", write(tmp_path, {"tasks": ["kmmlu"], "include_path": ["tasks"]}), "--dry-run"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out.split("launch:")[0])
    assert resolved["evaluation"]["include_path"] == [str(tmp_path.resolve() / "tasks")]


def test_due_at_the_interval_and_at_stage_ends():
    every_3 = EvaluationConfig(tasks=["kmmlu"], interval=3, at_stage_end=False)
    assert [s for s in range(1, 10) if every_3.due(s, stage_done=False)] == [3, 6, 9]
    assert not every_3.due(4, stage_done=True)
    stage_ends = EvaluationConfig(tasks=["kmmlu"])
    assert stage_ends.due(4, stage_done=True) and not stage_ends.due(3, stage_done=False)


@pytest.fixture
def no_launch(monkeypatch):
    """HF offline (no hub probe from unit tests); launching a worker fails the test."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(launcher, "launch", lambda *a, **k: pytest.fail("a worker was launched"))


def test_unknown_task_fails_before_launch_with_the_closest_names(tmp_path, capsys, no_launch):
    line = _error(capsys, write(tmp_path, {"tasks": ["kmmlx"]}), "--nproc", "2")  # the index test_cli.py uses
    assert "evaluation.tasks: unknown task 'kmmlx'; closest: " in line and "kmmlu" in line
    assert not (tmp_path / "run").exists()


def test_missing_include_path_names_the_key(tmp_path, capsys, no_launch):
    line = _error(capsys, write(tmp_path, {"tasks": ["kmmlu"], "include_path": ["nowhere"]}), "--nproc", "2")
    assert f"evaluation.include_path {tmp_path.resolve() / 'nowhere'}: no such directory" in line
