"""The planner's communication and schedule formulas, and the plan of a shipped config."""
import pytest

from megatron_kanana.config.root import load_config
from megatron_kanana.planning import timing
from megatron_kanana.planning.cli import plan_config
from megatron_kanana.planning.hardware import GPUS


def test_ring_volumes():
    assert timing.ring(1, 100.0, "all_reduce") == 0.0
    assert timing.ring(4, 100.0, "all_reduce") == 150.0
    assert timing.ring(4, 100.0, "reduce_scatter") == 75.0 == timing.ring(4, 100.0, "all_gather")


def test_tp_bytes_and_bubble():
    # [8192, 1, 4096] bf16 = 64 MiB; TP 2 all-reduce sends 1× that; 4 per layer
    assert timing.tp_bytes_per_layer(8192, 1, 4096, 2, False) == 4 * 2 * 8192 * 4096
    assert timing.tp_bytes_per_layer(8192, 1, 4096, 2, True) == 6 * 2 * 8192 * 4096
    assert timing.pipeline_bubble(4, 1, 16, 2.0) == 6.0
    assert timing.pipeline_bubble(4, 3, 16, 2.0) == 2.0


def test_overlap_hides_up_to_the_window():
    assert timing.exposed(3.0, 2.0, overlap=True) == 1.0
    assert timing.exposed(1.0, 2.0, overlap=True) == 0.0
    assert timing.exposed(1.0, 2.0, overlap=False) == 1.0


def test_8b_stage1_plan_fits_and_overlap_matters():
    cfg = load_config("examples/pretrain/kanana_8b_stage1.yaml")
    row = plan_config(cfg, "h100", 256)
    assert row.dp == 128 and row.fits
    assert row.total_memory < GPUS["h100"].usable_memory
    off = plan_config(load_config("examples/pretrain/kanana_8b_stage1.yaml",
                                  ["optim.overlap_grad_reduce=false", "optim.overlap_param_gather=false"]), "h100", 256)
    assert off.step.dp_grad_comm > row.step.dp_grad_comm
    assert off.tokens_per_s_per_gpu < row.tokens_per_s_per_gpu
    # the distributed optimizer's share shrinks with DP; DP = 1 (TP × PP GPUs) does not fit
    assert not plan_config(cfg, "h100", 2).fits
