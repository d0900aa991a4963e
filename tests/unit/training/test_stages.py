"""The stage plan: steps from token budgets, continued vs restarted schedules, stage selection."""
import pytest
import yaml

from megatron_kanana.config import ConfigError
from megatron_kanana.training.data import DataConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig
from megatron_kanana.training.stages import plan_stages


@pytest.fixture
def mixture(tmp_path):
    import numpy as np
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    for name in ("en", "ko"):
        builder = IndexedDatasetBuilder(str(tmp_path / f"{name}.bin"), dtype=np.uint16)
        for _ in range(20):
            builder.add_document(np.arange(1, 50, dtype=np.uint16), [49])
        builder.finalize(str(tmp_path / f"{name}.idx"))
    spec = {"stages": [
        {"name": "s1", "tokens": 10240, "sources": [{"path": "en", "category": "en", "weight": 1.0}]},
        {"name": "s2", "tokens": 2048, "sources": [{"path": "ko", "category": "ko", "weight": 1.0}]}]}
    path = tmp_path / "mix.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def data(mixture, **kw):
    return DataConfig(mixture=str(mixture), tokenizer="t", data_root=str(mixture.parent), seq_length=64,
                      global_batch_size=16, micro_batch_size=4, **kw)


def test_steps_from_budgets_and_continued_schedule(mixture):
    plan = plan_stages(data(mixture), ScheduleConfig(lr_decay_style="deepseek", lr=1.0, warmup_steps=1))
    assert [s.steps for s in plan.stages] == [10, 2]  # 10240 / (16 × 64), 2048 / 1024
    assert plan.end_step == 12 and plan.locate(10) == (1, 0)
    # one schedule over both stages: drops at round(0.8 × 12) = 10 and round(0.9 × 12) = 11
    assert plan.lr(9) == pytest.approx(1.0)
    assert plan.lr(10) == pytest.approx(0.316)
    assert plan.lr(11) == pytest.approx(0.316 ** 2)
    assert set(plan.stages[1].categories) == {"ko"}


def test_stage2_alone_continues_stage1_schedule(mixture):
    plan = plan_stages(data(mixture, stages=["s2"]), ScheduleConfig(lr_decay_style="deepseek", lr=1.0))
    assert plan.start_index == 1 and plan.first_step(plan.start_index) == 10 and plan.end_step == 12
    restarted = plan_stages(data(mixture, stages=["s2"], stage_schedule="restart"), ScheduleConfig(lr=1.0))
    assert [s.name for s in restarted.stages] == ["s2"] and restarted.first_step(0) == 0


def test_errors_name_the_stage(mixture):
    with pytest.raises(ConfigError, match="data.stages: 's3' is not a stage"):
        plan_stages(data(mixture, stages=["s3"]), ScheduleConfig())
    with pytest.raises(ConfigError, match=r"schedule \(stage s2, 2 steps\): warmup_steps"):
        plan_stages(data(mixture, stage_schedule="restart"), ScheduleConfig(warmup_steps=5))
