"""`kanana plot`: PNGs from a synthetic metrics JSONL; clear errors without metrics."""
import json
import math

import pytest

from megatron_kanana.cli import main
from megatron_kanana.training.lr_schedule import ScheduleConfig, learning_rate
from megatron_kanana.training.plot import MetricsFileError, plot_run, read_metrics

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_run(run_dir, n=200, resumed=False):
    """A deepseek-schedule run logging every 5 iterations, validation every 50."""
    sched = ScheduleConfig(lr=3e-4, warmup_steps=20, train_steps=n)
    run_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for it in range(5, n + 1, 5):
        lines.append({"kind": "train", "iteration": it, "total_iterations": n, "consumed_tokens": it * 4096,
                      "lr": learning_rate(sched, it - 1), "loss": 2.0 + 8.0 * math.exp(-it / 40),
                      "z_loss": 1e-4 * (1 + math.exp(-it / 60)), "tokens_per_s": 9000.0 + it, "mfu": 0.4})
        if it % 50 == 0:
            lines.append({"kind": "validation", "iteration": it,
                          "losses": {"all": 2.2 + 8.0 * math.exp(-it / 40), "code": 1.8 + 7.0 * math.exp(-it / 40)}})
    if resumed:  # a resumed run replays iteration 100 with a different loss
        lines.append({**lines[0], "iteration": 100, "loss": 1.0})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))


def test_plot_writes_non_empty_pngs(tmp_path):
    write_run(tmp_path / "run")
    paths = plot_run(tmp_path / "run")
    assert sorted(p.name for p in paths) == ["loss.png", "lr.png", "throughput.png", "validation.png"]
    for p in paths:
        assert p.parent == tmp_path / "run" / "plots"
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5000
    assert not list((tmp_path / "run" / "plots").glob(".*tmp"))


def test_cli_plot_with_output(tmp_path, capsys):
    write_run(tmp_path / "run")
    assert main(["plot", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "loss.png").stat().st_size > 0
    assert "loss.png" in capsys.readouterr().out


def test_resumed_records_replace_replayed_ones_and_truncated_tail_is_ignored(tmp_path):
    write_run(tmp_path, resumed=True)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train", "itera')  # crash mid-line
    train, validation = read_metrics(tmp_path)
    assert [r["loss"] for r in train if r["iteration"] == 100] == [1.0]
    assert [r["iteration"] for r in train] == sorted(r["iteration"] for r in train)
    assert len(validation) == 4


def test_clear_errors_without_metrics(tmp_path, capsys):
    with pytest.raises(MetricsFileError, match="no metrics.jsonl"):
        plot_run(tmp_path)
    assert main(["plot", str(tmp_path)]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(MetricsFileError, match="no metrics records"):
        plot_run(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("not json\n{}\n")
    with pytest.raises(MetricsFileError, match=r"metrics.jsonl:1"):
        plot_run(tmp_path)
    with pytest.raises(MetricsFileError, match="not a directory"):
        plot_run(tmp_path / "missing")


def _evaluations(run_dir, results_at):
    with open(run_dir / "metrics.jsonl", "a") as f:
        for it in (50, 100, 150):
            f.write(json.dumps({"kind": "evaluation", "iteration": it, "results": results_at(it)}) + "\n")


def test_benchmarks_of_an_evaluation_section_get_one_png_per_task(tmp_path):
    write_run(tmp_path)
    _evaluations(tmp_path, lambda it: {"kmmlu": {"acc": 0.2 + it / 1000, "acc_stderr": 0.02},
                                       "gsm8k": {"exact_match/strict-match": it / 500}})
    names = sorted(p.name for p in plot_run(tmp_path))
    assert names == ["eval_gsm8k.png", "eval_kmmlu.png", "loss.png", "lr.png", "throughput.png", "validation.png"]
    assert (tmp_path / "plots" / "eval_kmmlu.png").read_bytes().startswith(PNG_MAGIC)


def test_compare_draws_another_runs_benchmarks_beside(tmp_path, capsys):
    for name, offset in (("a", 0.0), ("b", 0.1)):
        write_run(tmp_path / name)
        _evaluations(tmp_path / name, lambda it: {"kmmlu": {"acc": offset + it / 1000}})
    with open(tmp_path / "b" / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"kind": "evaluation", "iteration": 200, "results": {"haerae": {"acc": 0.3}}}) + "\n")
    assert main(["plot", str(tmp_path / "a"), "--compare", str(tmp_path / "b"), "--output", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "eval_kmmlu.png" in out and "eval_haerae.png" in out  # a task only the other run has
