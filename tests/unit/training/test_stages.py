"""The stage plan: steps from token budgets, continued vs restarted schedules, stage selection,
and a stage's own sequence length and RoPE (a context-extension stage)."""
import pytest
import yaml

from megatron_kanana.config import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.training.data import DataConfig
from megatron_kanana.training.lr_schedule import ScheduleConfig
from megatron_kanana.training.stages import plan_stages, start_shape

TINY = get_preset("tiny").replace(max_position_embeddings=64)
YARN = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 64, "beta_fast": 64, "beta_slow": 2}


@pytest.fixture
def mixture(tmp_path):
    import numpy as np
    from megatron_kanana.mcore.indexed import IndexedDatasetBuilder

    for name in ("en", "ko"):
        builder = IndexedDatasetBuilder(str(tmp_path / f"{name}.bin"), dtype=np.uint16)
        for _ in range(20):
            builder.add_document(np.arange(1, 50, dtype=np.uint16), [49])
        builder.finalize(str(tmp_path / f"{name}.idx"))
    return write_mixture(tmp_path / "mix.yaml")


def write_mixture(path, s2=None, s3=None):
    """s1 (10240 tokens, en), s2 (2048, ko), and with `s3` a third stage (2048, en); s2/s3: a
    stage's own fields."""
    spec = {"stages": [
        {"name": "s1", "tokens": 10240, "sources": [{"path": "en", "category": "en", "weight": 1.0}]},
        {"name": "s2", "tokens": 2048, "sources": [{"path": "ko", "category": "ko", "weight": 1.0}], **(s2 or {})}]}
    if s3 is not None:
        spec["stages"].append({"name": "s3", "tokens": 2048, "sources": [{"path": "en", "category": "en",
                                                                          "weight": 1.0}], **s3})
    path.write_text(yaml.safe_dump(spec))
    return path


def data(mixture, **kw):
    return DataConfig(mixture=str(mixture), tokenizer="t", data_root=str(mixture.parent), seq_length=64,
                      global_batch_size=16, micro_batch_size=4, **kw)


def test_steps_from_budgets_and_continued_schedule(mixture):
    plan = plan_stages(data(mixture), ScheduleConfig(lr_decay_style="deepseek", lr=1.0, warmup_steps=1), TINY)
    assert [s.steps for s in plan.stages] == [10, 2]  # 10240 / (16 × 64), 2048 / 1024
    assert plan.end_step == 12 and plan.locate(10) == (1, 0)
    # one schedule over both stages: drops at round(0.8 × 12) = 10 and round(0.9 × 12) = 11
    assert plan.lr(9) == pytest.approx(1.0)
    assert plan.lr(10) == pytest.approx(0.316)
    assert plan.lr(11) == pytest.approx(0.316 ** 2)
    assert set(plan.stages[1].categories) == {"ko"}


def test_stage2_alone_continues_stage1_schedule(mixture):
    plan = plan_stages(data(mixture, stages=["s2"]), ScheduleConfig(lr_decay_style="deepseek", lr=1.0), TINY)
    assert plan.start_index == 1 and plan.first_step(plan.start_index) == 10 and plan.end_step == 12
    restarted = plan_stages(data(mixture, stages=["s2"], stage_schedule="restart"), ScheduleConfig(lr=1.0), TINY)
    assert [s.name for s in restarted.stages] == ["s2"] and restarted.first_step(0) == 0


def test_errors_name_the_stage(mixture):
    with pytest.raises(ConfigError, match="data.stages: 's3' is not a stage"):
        plan_stages(data(mixture, stages=["s3"]), ScheduleConfig(), TINY)
    with pytest.raises(ConfigError, match=r"schedule \(stage s2, 2 steps\): warmup_steps"):
        plan_stages(data(mixture, stage_schedule="restart"), ScheduleConfig(warmup_steps=5), TINY)


LONG = {"seq_length": 128, "max_position_embeddings": 128, "rope_scaling": YARN}


def test_a_stage_sets_its_own_length_and_rope_for_itself_and_later_stages(mixture):
    path = write_mixture(mixture, s2=LONG, s3={})
    plan = plan_stages(data(path), ScheduleConfig(lr=1.0), TINY)
    s1, s2, s3 = plan.stages
    assert (s1.seq_length, s1.model) == (64, TINY)
    # the stage's steps come from its token budget at its own length: 2048 / (16 × 128)
    assert (s2.seq_length, s2.steps, s3.steps) == (128, 1, 1)
    assert s2.model.max_position_embeddings == 128 and s2.model.rope_scaling.rope_type == "yarn"
    assert s2.model.replace(max_position_embeddings=64, rope_scaling=None) == TINY  # position fields only
    assert (s3.seq_length, s3.model) == (128, s2.model)  # held from s2 on
    # a run that starts at s2 builds the model with s2's RoPE (e.g. a separate stage-2 run)
    assert start_shape(data(path, stages=["s2"]), TINY) == (s2.model, f"{path}: stages[1]")
    assert start_shape(data(path, stages=["s3"]), TINY) == (s2.model, f"{path}: stages[1]")
    assert start_shape(data(path), TINY) == (TINY, "model")


@pytest.mark.parametrize("s2,names", [
    ({"seq_length": 128}, "stages[1].seq_length (128) exceeds the stage's max_position_embeddings (64"),
    ({"rope_scaling": {**YARN, "factor": 1.0}, "max_position_embeddings": 128},
     "stages[1].rope_scaling.factor: YaRN extends the context, so it must be > 1"),
    ({"rope_scaling": {**YARN, "original_max_position_embeddings": 256}, "max_position_embeddings": 128},
     "stages[1].rope_scaling.original_max_position_embeddings (256) exceeds max_position_embeddings (128)"),
    ({"rope_scaling": {**YARN, "original_max_position_embeddings": 32}, "max_position_embeddings": 128},
     "stages[1].rope_scaling.original_max_position_embeddings (32) is not the window of stage s1"),
    ({"max_position_embeddings": 32}, "stages[1].max_position_embeddings (32) is shorter than the window of stage s1"),
])
def test_a_stage_rope_change_that_cannot_hold_is_refused_naming_the_key(mixture, s2, names):
    path = write_mixture(mixture, s2=s2)
    with pytest.raises(ConfigError) as e:
        plan_stages(data(path), ScheduleConfig(lr=1.0), TINY)
    assert str(e.value).startswith(f"{path}: ") and names in str(e.value)


def test_a_stage_length_context_parallelism_cannot_split_is_refused(mixture):
    path = write_mixture(mixture, s2={"seq_length": 60})
    with pytest.raises(ConfigError, match=r"stages\[1\].seq_length \(60, stage s2\) must be divisible by 2 × "
                                          r"parallel.context_parallel_size \(8\)"):
        plan_stages(data(path), ScheduleConfig(lr=1.0), TINY, context_parallel_size=4)
    plan_stages(data(path), ScheduleConfig(lr=1.0), TINY)  # without CP 60 tokens are fine
