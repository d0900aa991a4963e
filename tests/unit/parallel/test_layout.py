"""Every bad parallel combination is a clear error naming the setting, before any process group."""
import pytest

from megatron_kanana.config import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.parallel.config import check_layout

NANO = get_preset("kanana-nano-2.1b")  # 24 heads, 8 KV heads, 32 layers


def parallel(**kw):
    return ParallelConfig.from_dict(kw, prefix="parallel")


def test_good_layout_resolves_data_parallel():
    layout = check_layout(parallel(tensor_model_parallel_size=2, pipeline_model_parallel_size=2), NANO, 16, "cuda")
    assert (layout.tensor, layout.pipeline, layout.data) == (2, 2, 4)


@pytest.mark.parametrize("settings,world,device,message", [
    ({"tensor_model_parallel_size": 2, "pipeline_model_parallel_size": 2}, 6, "cuda",
     r"world size 6 is not divisible by tensor_model_parallel_size \(2\) × pipeline_model_parallel_size \(2\)"),
    ({"tensor_model_parallel_size": 16}, 16, "cuda", r"num_attention_heads \(24\) is not divisible by tensor_model_parallel_size \(16\)"),
    ({"tensor_model_parallel_size": 3}, 3, "cuda", r"num_query_groups \(8 KV heads\) is not divisible by tensor_model_parallel_size \(3\)"),
    ({"pipeline_model_parallel_size": 3}, 3, "cuda", r"num_layers \(32\) is not divisible by pipeline_model_parallel_size \(3\)"),
    ({"pipeline_model_parallel_size": 4, "virtual_pipeline_model_parallel_size": 3}, 4, "cuda",
     r"num_layers \(32\) is not divisible by .*virtual_pipeline_model_parallel_size \(3\) = 12"),
    ({"tensor_model_parallel_size": 2, "sequence_parallel": True}, 2, "cpu", r"sequence_parallel needs GPUs"),
    ({"context_parallel_size": 2}, 2, "cpu", r"context_parallel_size > 1 needs GPUs"),
])
def test_bad_layouts(settings, world, device, message):
    with pytest.raises(ConfigError, match=message):
        check_layout(parallel(**settings), NANO, world, device)


@pytest.mark.parametrize("settings,message", [
    ({"sequence_parallel": True}, r"parallel.sequence_parallel needs tensor_model_parallel_size > 1"),
    ({"virtual_pipeline_model_parallel_size": 2}, r"virtual_pipeline_model_parallel_size > 1 needs pipeline_model_parallel_size >= 2"),
    ({"tensor_model_parallel_size": 0}, r"parallel.tensor_model_parallel_size must be >= 1"),
    ({"tensor_model_parallel_sz": 2}, r"unknown key\(s\) parallel.tensor_model_parallel_sz"),
    ({"tensor_model_parallel_size": "2"}, r"parallel.tensor_model_parallel_size: expected an integer"),
])
def test_bad_section_values(settings, message):
    with pytest.raises(ConfigError, match=message):
        parallel(**settings)


def test_vocab_not_divisible_by_tp():
    shape = get_preset("tiny").replace(vocab_size=511, num_attention_heads=4)
    with pytest.raises(ConfigError, match=r"vocab_size \(511\) is not divisible by tensor_model_parallel_size \(2\)"):
        check_layout(parallel(tensor_model_parallel_size=2), shape, 2, "cpu")
