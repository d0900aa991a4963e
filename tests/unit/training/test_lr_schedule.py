"""LR schedules at their key steps, config errors, stage mapping, independent weight decay."""
import math

import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.training.lr_schedule import (
    ScheduleConfig, learning_rate, schedule_at, weight_decay_for, deepseek_milestone_steps, wsd_decay_start)


def cfg(**kw):
    base = dict(lr=1e-3, min_lr=1e-5, warmup_steps=100, train_steps=1000)
    base.update(kw)
    return ScheduleConfig.from_dict(base)


@pytest.mark.parametrize("style", ["deepseek", "cosine", "wsd", "constant"])
def test_warmup_is_linear_and_ends_at_peak(style):
    c = cfg(lr_decay_style=style)
    assert learning_rate(c, 0) == pytest.approx(1e-3 / 100)
    assert learning_rate(c, 49) == pytest.approx(1e-3 * 50 / 100)
    assert learning_rate(c, 99) == pytest.approx(1e-3)
    assert learning_rate(c, 100) == pytest.approx(1e-3)


def test_deepseek_drops_by_0316_at_80_and_90_percent():
    c = cfg(lr_decay_style="deepseek", min_lr=0.0)
    assert deepseek_milestone_steps(c) == (800, 900)
    assert learning_rate(c, 799) == pytest.approx(1e-3)
    assert learning_rate(c, 800) == pytest.approx(1e-3 * 0.316)
    assert learning_rate(c, 899) == pytest.approx(1e-3 * 0.316)
    assert learning_rate(c, 900) == pytest.approx(1e-3 * 0.316**2)
    assert learning_rate(c, 999) == pytest.approx(1e-3 * 0.316**2)
    assert learning_rate(c, 5000) == pytest.approx(1e-3 * 0.316**2)


def test_deepseek_respects_min_lr_as_floor():
    c = cfg(lr_decay_style="deepseek", min_lr=2e-4)
    assert learning_rate(c, 800) == pytest.approx(3.16e-4)
    assert learning_rate(c, 900) == pytest.approx(2e-4)


def test_cosine_midpoint_and_end():
    c = cfg(lr_decay_style="cosine")
    mid = 100 + 900 // 2
    assert learning_rate(c, mid) == pytest.approx((1e-3 + 1e-5) / 2)
    quarter = 100 + 900 // 4
    assert learning_rate(c, quarter) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi / 4)))
    assert learning_rate(c, 1000) == pytest.approx(1e-5)
    assert learning_rate(c, 2000) == pytest.approx(1e-5)
    assert 1e-5 < learning_rate(c, 999) < 1.01e-5


@pytest.mark.parametrize("shape,remaining_at_quarter", [("linear", 0.75), ("sqrt", 0.5),
                                                        ("cosine", 0.5 * (1 + math.cos(math.pi / 4)))])
def test_wsd_plateau_then_decay(shape, remaining_at_quarter):
    c = cfg(lr_decay_style="wsd", wsd_decay_fraction=0.2, wsd_decay_shape=shape)
    assert wsd_decay_start(c) == 800
    assert learning_rate(c, 100) == learning_rate(c, 500) == learning_rate(c, 800) == pytest.approx(1e-3)
    assert learning_rate(c, 850) == pytest.approx(1e-5 + (1e-3 - 1e-5) * remaining_at_quarter)
    assert learning_rate(c, 1000) == pytest.approx(1e-5)
    assert learning_rate(c, 999) < learning_rate(c, 900) < 1e-3


def test_constant_and_no_warmup():
    c = cfg(lr_decay_style="constant", warmup_steps=0)
    assert learning_rate(c, 0) == learning_rate(c, 999) == 1e-3


def test_negative_step_is_refused():
    with pytest.raises(ValueError, match="step"):
        learning_rate(cfg(), -1)


@pytest.mark.parametrize("overrides,key", [
    ({"lr_decay_style": "linear"}, "lr_decay_style"),
    ({"min_lr": 2e-3}, "min_lr"),
    ({"warmup_steps": 1001}, "warmup_steps"),
    ({"lr": 0.0}, "lr"),
    ({"train_steps": 0}, "train_steps"),
    ({"deepseek_milestones": [0.9, 0.8]}, "deepseek_milestones"),
    ({"deepseek_milestones": [0.8, 1.5]}, "deepseek_milestones"),
    ({"deepseek_milestones": [0.05, 0.9]}, "deepseek_milestones"),  # inside the warm-up
    ({"deepseek_factor": 1.5}, "deepseek_factor"),
    ({"lr_decay_style": "wsd", "wsd_decay_fraction": 0.95}, "wsd_decay_fraction"),
    ({"wsd_decay_shape": "exp"}, "wsd_decay_shape"),
    ({"warmup": 10}, "warmup"),
])
def test_config_errors_name_the_key(overrides, key):
    with pytest.raises(ConfigError, match=key):
        cfg(**overrides)


def test_config_error_carries_section_prefix():
    with pytest.raises(ConfigError, match=r"schedule\.min_lr"):
        ScheduleConfig.from_dict({"lr": 1e-4, "min_lr": 1e-3}, prefix="schedule")


def test_weight_decay_for_makes_decay_independent_of_peak_lr():
    assert weight_decay_for(1e-4, 1e-3) == pytest.approx(0.1)
    # AdamW's per-step decay lr_t * wd equals lambda * s(t) whatever the peak LR
    for peak in (3e-4, 1e-3, 4e-3):
        c = cfg(lr=peak, min_lr=0.0, lr_decay_style="deepseek")
        wd = weight_decay_for(1e-4, peak)
        assert learning_rate(c, 850) * wd == pytest.approx(1e-4 * 0.316)
    with pytest.raises(ValueError, match="peak_lr"):
        weight_decay_for(1e-4, 0.0)
    with pytest.raises(ValueError, match="independent_wd"):
        weight_decay_for(-1.0, 1e-3)


def test_stages_restart_each_schedule():
    s1 = cfg(train_steps=900, warmup_steps=10)
    s2 = cfg(train_steps=100, warmup_steps=10, lr=5e-4)
    assert schedule_at(0, [s1, s2], "restart") == (s1, 0)
    assert schedule_at(899, [s1, s2], "restart") == (s1, 899)
    assert schedule_at(900, [s1, s2], "restart") == (s2, 0)
    c, local = schedule_at(905, [s1, s2], "restart")
    assert learning_rate(c, local) == pytest.approx(5e-4 * 6 / 10)  # warming up again


def test_stages_continue_one_schedule():
    # Kanana: 2.7T + 0.3T tokens; the second deepseek drop (90%) is where stage 2 starts.
    s1 = cfg(train_steps=2700, lr_decay_style="deepseek", min_lr=0.0)
    s2 = s1.replace(train_steps=300)
    c, local = schedule_at(2700, [s1, s2], "continue")
    assert (c.train_steps, local) == (3000, 2700)
    assert learning_rate(c, 2399) == pytest.approx(1e-3)
    assert learning_rate(*schedule_at(2400, [s1, s2], "continue")) == pytest.approx(3.16e-4)
    assert learning_rate(c, local) == pytest.approx(1e-3 * 0.316**2)


def test_stage_errors():
    s1 = cfg(train_steps=500)
    with pytest.raises(ConfigError, match="stage 2.*lr"):
        schedule_at(0, [s1, s1.replace(lr=5e-4)], "continue")
    with pytest.raises(ValueError, match="outside"):
        schedule_at(1000, [s1, s1], "restart")
    with pytest.raises(ConfigError, match="stage mode"):
        schedule_at(0, [s1], "resume")
