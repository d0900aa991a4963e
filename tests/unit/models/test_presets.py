"""Parameter counts of the presets (formula); tests/distributed/test_model_build.py
checks the formula against megatron-core models actually built."""
import json

import pytest

from megatron_kanana.cli import main
from megatron_kanana.config import ConfigError
from megatron_kanana.models import PRESETS, ModelShape, get_preset


@pytest.mark.parametrize("name,total,non_embedding", [
    ("kanana-nano-2.1b", 2_086_979_328, 1_857_144_576),  # published HF config
    ("kanana-8b", 8_030_261_248, None),
    ("kanana-essence-9.8b", 9_775_157_248, None),
])
def test_published_counts(name, total, non_embedding):
    shape = get_preset(name)
    assert shape.parameters == total
    if non_embedding is not None:
        assert shape.non_embedding_parameters == non_embedding


def test_model_info_json(capsys):
    assert main(["model-info", "kanana-nano-2.1b", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["parameters"] == 2086979328
    assert info["non_embedding_parameters"] == 1857144576
    assert info["shape"]["kv_channels"] == 128 and info["shape"]["hidden_size"] == 1792


def test_nano_head_dim_is_independent_of_hidden():
    nano = get_preset("kanana-nano-2.1b")
    assert nano.num_attention_heads * nano.kv_channels == 3072 != nano.hidden_size


def test_every_preset_is_valid_and_tiers_shrink():
    tiers = ["kanana-8b", "kanana-4.5b", "kanana-nano-2.1b", "kanana-1.3b", "kanana-635m"]
    sizes = [get_preset(t).parameters for t in tiers]
    assert sizes == sorted(sizes, reverse=True)
    assert all(isinstance(s, ModelShape) for s in PRESETS.values())


def test_unknown_preset_and_bad_shape():
    with pytest.raises(ConfigError, match="unknown model preset 'kanana-9b'"):
        get_preset("kanana-9b")
    with pytest.raises(ConfigError, match=r"model.num_attention_heads \(6\) must be a multiple of num_query_groups \(4\)"):
        ModelShape.from_dict(dict(hidden_size=64, num_layers=2, num_attention_heads=6, num_query_groups=4,
                                  kv_channels=16, ffn_hidden_size=128), prefix="model")


def test_flops_per_token_counts_output_layer_and_attention():
    nano = get_preset("kanana-nano-2.1b")
    matmul = nano.parameters - nano.hidden_size * (2 * nano.num_layers + 1)  # norms do no matmuls
    assert nano.flops_per_token(4096) == 6 * matmul + 6 * 32 * 4096 * 24 * 128
