"""MetricsLogger sinks (JSONL, TensorBoard, wandb offline), throughput/MFU arithmetic, LoggingConfig."""
import io
import json
import logging
import sys

import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training import metrics
from megatron_kanana.training.metrics import LoggingConfig, MetricsLogger, throughput


@pytest.fixture
def lines():
    """Messages of the project logger (it does not propagate to the root, so caplog misses it)."""
    got = []
    handler = logging.Handler()
    handler.emit = lambda record: got.append(record.getMessage())
    log = logging.getLogger("megatron_kanana")
    metrics.get_logger()  # make sure the project logger is configured first
    log.addHandler(handler)
    yield got
    log.removeHandler(handler)


def test_throughput_and_mfu_arithmetic():
    tp = throughput(tokens=8 * 4096, seconds=2.0, flops_per_token=6e9, num_gpus=8, peak_tflops=989.0)
    assert tp.tokens_per_s == pytest.approx(16384.0)
    assert tp.tflops_per_gpu == pytest.approx(16384 * 6e9 / 8 / 1e12)
    assert tp.mfu == pytest.approx(tp.tflops_per_gpu / 989.0)
    # 2.1B-ish: 1.3e10 FLOPs/token at 25k tokens/s/GPU is ~33% of an H100
    assert throughput(25_000, 1.0, 1.3e10, 1, 989.0).mfu == pytest.approx(0.3286, abs=1e-4)
    with pytest.raises(ValueError, match="seconds"):
        throughput(1, 0.0, 1.0, 1, 1.0)
    with pytest.raises(ValueError, match="num_gpus"):
        throughput(1, 1.0, 1.0, 0, 1.0)


@pytest.mark.parametrize("overrides,key", [({"log_interval": 0}, "log_interval"),
                                           ({"peak_tflops_per_gpu": -1.0}, "peak_tflops_per_gpu"),
                                           ({"tensorboard": "yes"}, "tensorboard"),
                                           ({"wandb_projekt": "x"}, "wandb_projekt")])
def test_logging_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        LoggingConfig.from_dict(overrides, prefix="logging")


def _run(tmp_path, cfg, n=6, **kw):
    with MetricsLogger(tmp_path, cfg, total_iterations=n, flops_per_token=6e9, **kw) as m:
        for i in range(1, n + 1):
            m.log_step(i, loss=4.0 - 0.1 * i if i != 3 else float("nan"), lr=1e-4 * i, tokens=1000,
                       seconds=0.5, consumed_tokens=1000 * i, z_loss=0.01, grad_norm=2.0, skipped=(i == 3))
        m.log_validation(n, {"all": 3.0, "code": 2.5, "korean_web": 3.2})
    return m


def test_jsonl_and_tensorboard_written_with_interval_averages(tmp_path, lines):
    cfg = LoggingConfig(log_interval=2, wandb=False, progress_bar=False)
    _run(tmp_path, cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [2, 4, 6]
    assert train[0]["loss"] == pytest.approx((3.9 + 3.8) / 2)
    assert train[1]["loss"] == pytest.approx(3.6)  # iteration 3 was skipped: not averaged in
    assert (train[1]["skipped_iterations"], train[2]["skipped_total"]) == (1, 1)
    assert train[2]["tokens_per_s"] == pytest.approx(2000.0)
    assert train[2]["memory_kind"] == "rss" and train[2]["memory_gib"] > 0
    assert "mfu" not in train[2]  # on CPU there is no meaningful MFU
    assert records[-1] == {**records[-1], "kind": "validation", "losses": {"all": 3.0, "code": 2.5, "korean_web": 3.2}}
    assert any(" iteration 4/6 " in m and "skipped (nan/inf): 1" in m and "z loss" in m for m in lines)
    assert any("validation at iteration" in m and "korean_web" in m for m in lines)

    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(events[0]))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss")] == [2, 4, 6]
    assert acc.Scalars("validation/code")[0].value == pytest.approx(2.5)


def test_gpu_line_has_tflops_and_mfu(tmp_path, monkeypatch, lines):
    monkeypatch.setattr(metrics, "memory_in_use", lambda on_gpu: (10.0, "gpu_max_allocated"))
    cfg = LoggingConfig(log_interval=6, tensorboard=False, progress_bar=False, peak_tflops_per_gpu=100.0)
    _run(tmp_path, cfg, on_gpu=True, num_gpus=2)
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert record["tflops_per_gpu"] == pytest.approx(2000 * 6e9 / 2 / 1e12)
    assert record["mfu"] == pytest.approx(record["tflops_per_gpu"] / 100.0)
    assert any("TFLOP/s/GPU: 6.0 | MFU: 6.0%" in m and "GPU max allocated" in m for m in lines)


def test_only_rank_zero_writes(tmp_path):
    m = _run(tmp_path / "r1", LoggingConfig(), rank=1)
    assert not (tmp_path / "r1").exists() and not m.active


def test_resume_appends_instead_of_truncating(tmp_path):
    cfg = LoggingConfig(log_interval=1, tensorboard=False, progress_bar=False)
    _run(tmp_path, cfg, n=2)
    _run(tmp_path, cfg, n=2)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2 * 3


def test_failing_wandb_warns_and_training_goes_on(tmp_path, monkeypatch, lines):
    def broken(*args):
        raise RuntimeError("no wandb here")
    monkeypatch.setattr(metrics.sinks, "WandbSink", broken)
    m = _run(tmp_path, LoggingConfig(wandb=True, tensorboard=False, progress_bar=False))
    assert m.wandb is None and (tmp_path / "metrics.jsonl").exists()
    assert any("wandb logging disabled" in msg and "no wandb here" in msg for msg in lines)


def test_wandb_defaults_to_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # unset: the logger must still go offline
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "wb").mkdir()
    m = _run(tmp_path / "run", LoggingConfig(log_interval=3, wandb=True, tensorboard=False, progress_bar=False))
    assert m.wandb is not None
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))


def test_progress_bar_only_on_a_terminal(tmp_path, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    term = Terminal()
    monkeypatch.setattr(sys, "stdout", term)
    m = _run(tmp_path / "tty", LoggingConfig(log_interval=2, tensorboard=False))
    assert m.progress is not None and "6/6" in term.getvalue() and "loss=" in term.getvalue()
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert _run(tmp_path / "pipe", LoggingConfig(tensorboard=False)).progress is None


def test_evaluation_metrics_reach_jsonl_and_tensorboard_per_task(tmp_path, lines):
    cfg = LoggingConfig(log_interval=1, wandb=False, progress_bar=False)
    with MetricsLogger(tmp_path, cfg, total_iterations=8) as m:
        for step in (4, 8):
            m.log_evaluation(step, {"kmmlu": {"acc": step / 10, "acc_stderr": 0.05},
                                    "gsm8k": {"exact_match/strict-match": 0.5}}, seconds=3.0)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["kind"], r["iteration"]) for r in records] == [("evaluation", 4), ("evaluation", 8)]
    assert records[1]["results"]["kmmlu"] == {"acc": 0.8, "acc_stderr": 0.05} and records[1]["seconds"] == 3.0
    assert any("evaluation at iteration" in m and "kmmlu acc: 0.8000" in m and "stderr" not in m for m in lines)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(next((tmp_path / "tensorboard").glob("events.out.tfevents.*"))))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("eval/kmmlu/acc")] == [(4, pytest.approx(0.4)),
                                                                          (8, pytest.approx(0.8))]
    assert acc.Scalars("eval/gsm8k/exact_match/strict-match")[0].value == pytest.approx(0.5)
