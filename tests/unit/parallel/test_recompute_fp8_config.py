"""Recompute / FP8 / overlap settings: bad values are ConfigErrors naming the key."""
import pytest

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.parallel.config import ParallelConfig, check_layout
from megatron_kanana.training.optim import OptimConfig


@pytest.mark.parametrize("fields,key", [
    (dict(recompute_granularity="full"), "recompute_method"),
    (dict(recompute_method="uniform"), "recompute_method"),
    (dict(recompute_granularity="selective", recompute_num_layers=2), "recompute_num_layers"),
    (dict(recompute_granularity="full", recompute_method="block", recompute_num_layers=0), "recompute_num_layers"),
    (dict(fp8_param_gather=True), "fp8_param_gather"),
    (dict(tensor_model_parallel_size=2, tp_comm_overlap=True), "tp_comm_overlap"),
])
def test_parallel_section_refuses(fields, key):
    with pytest.raises(ConfigError, match=key):
        ParallelConfig.from_dict(fields, prefix="parallel")


def test_recompute_layers_beyond_a_chunk():
    shape = get_preset("tiny")  # 4 layers
    parallel = ParallelConfig(pipeline_model_parallel_size=2, recompute_granularity="full",
                              recompute_method="block", recompute_num_layers=3)
    with pytest.raises(ConfigError, match="parallel.recompute_num_layers"):
        check_layout(parallel, shape, 2, "cpu")
    check_layout(ParallelConfig(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=4),
                 shape, 1, "cpu")


@pytest.mark.parametrize("key", ["fp8", "tp_comm_overlap"])
def test_engine_features_refused_on_cpu(key):
    fields = {"fp8": dict(fp8="e4m3"), "tp_comm_overlap": dict(tensor_model_parallel_size=2, sequence_parallel=True,
                                                               tp_comm_overlap=True)}[key]
    with pytest.raises(ConfigError, match=f"parallel.{key}"):
        check_layout(ParallelConfig(**fields), get_preset("tiny"), 2, "cpu")


def test_optim_overlap_rules_and_defaults():
    with pytest.raises(ConfigError, match="overlap_param_gather"):
        OptimConfig.from_dict({"overlap_param_gather": True, "use_distributed_optimizer": False}, prefix="optim")
    with pytest.raises(ConfigError, match="overlap_grad_reduce"):
        OptimConfig.from_dict({"overlap_param_gather": True, "overlap_grad_reduce": False}, prefix="optim")
    default = OptimConfig()
    assert default.resolved_overlap(8, "cuda") == (True, True)
    assert default.resolved_overlap(1, "cuda") == (False, False)
    assert default.resolved_overlap(8, "cpu") == (False, False)  # the stored CPU curves were recorded without
    assert OptimConfig(use_distributed_optimizer=False).resolved_overlap(8, "cuda") == (True, False)
