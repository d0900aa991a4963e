"""NaN/inf policy: skip and count, raise after N consecutive bad steps."""
import math

import pytest
import torch

from megatron_kanana.training.nan_guard import NanGuard, TrainingDiverged


def test_skips_counts_and_resets_on_a_good_step():
    guard = NanGuard(max_consecutive_bad_steps=3)
    assert guard.check(2.5) is True
    assert guard.check(math.nan) is False
    assert guard.check(math.inf, step=7) is False
    assert (guard.consecutive, guard.skipped_total) == (2, 2)
    assert guard.check(torch.tensor(2.4)) is True
    assert (guard.consecutive, guard.skipped_total) == (0, 2)


def test_bad_grad_norm_alone_skips():
    guard = NanGuard()
    assert guard.check(2.0, grad_norm=float("nan")) is False
    assert guard.check(2.0, grad_norm=1.0) is True


def test_raises_after_n_consecutive_bad_steps():
    guard = NanGuard(max_consecutive_bad_steps=3)
    guard.check(float("nan"))
    guard.check(float("-inf"))
    with pytest.raises(TrainingDiverged, match="3 consecutive.*step 12"):
        guard.check(float("nan"), step=12)


def test_state_round_trip_and_bad_limit():
    guard = NanGuard(2)
    guard.check(float("nan"))
    other = NanGuard(2)
    other.load_state_dict(guard.state_dict())
    with pytest.raises(TrainingDiverged):
        other.check(float("nan"))
    with pytest.raises(ValueError, match="max_consecutive_bad_steps"):
        NanGuard(0)
