"""The HF <-> megatron mapping: fused layouts, whole-state-dict inverses, config checks."""
from __future__ import annotations

import pytest
import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import get_preset
from megatron_kanana.surgery import hf_mapping as hm

NANO = get_preset("tiny-nano")  # 4 heads x 16 on hidden 48, 2 KV groups


def _random_hf(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v, generator=g) for k, v in hm.hf_tensor_shapes(shape).items()}


def test_qkv_is_grouped_query_heads_then_key_then_value():
    d, h = NANO.kv_channels, NANO.hidden_size
    # head i of q filled with i, of k with 10 + i, of v with 20 + i
    q = torch.arange(4).repeat_interleave(d)[:, None].float().expand(4 * d, h)
    k = (10 + torch.arange(2)).repeat_interleave(d)[:, None].float().expand(2 * d, h)
    v = (20 + torch.arange(2)).repeat_interleave(d)[:, None].float().expand(2 * d, h)
    fused = hm.fuse_qkv(q, k, v, NANO)
    heads = fused[::d, 0].tolist()  # one value per head-sized block of rows
    assert heads == [0, 1, 10, 20, 2, 3, 11, 21]  # group 0: q0 q1 k0 v0; group 1: q2 q3 k1 v1
    assert [torch.equal(a, b) for a, b in zip(hm.split_qkv(fused, NANO), (q, k, v))] == [True] * 3


def test_fc1_is_gate_then_up():
    gate, up = torch.randn(5, 3), torch.randn(5, 3)
    fused = hm.fuse_fc1(gate, up)
    assert torch.equal(fused[:5], gate) and torch.equal(fused[5:], up)
    assert all(torch.equal(a, b) for a, b in zip(hm.split_fc1(fused), (gate, up)))


@pytest.mark.parametrize("preset", ["tiny-nano", "tiny-untied", "tiny"])
def test_whole_state_dict_round_trip_and_shapes(preset):
    shape = get_preset(preset)
    hf = _random_hf(shape)
    mc = hm.hf_to_megatron(hf, shape)
    expected = dict(hm.global_tensor_shapes(shape))
    for i in range(shape.num_layers):
        expected.update({f"decoder.layers.{i}.{k}": v for k, v in hm.layer_tensor_shapes(shape).items()})
    assert {k: tuple(v.shape) for k, v in mc.items()} == expected
    back = hm.megatron_to_hf(mc, shape)
    assert set(back) == set(hf) and all(torch.equal(back[k], hf[k]) for k in hf)


def _llama_config(**overrides):
    config = dict(model_type="llama", hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, intermediate_size=128, vocab_size=512,
                  tie_word_embeddings=True, rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=256)
    config.update(overrides)
    return config


def test_shape_from_config_reads_head_dim_and_rope_parameters():
    shape = hm.shape_from_hf_config(_llama_config(rope_theta=None, rope_parameters={"rope_type": "default",
                                                                                    "rope_theta": 10000.0}))
    assert (shape.kv_channels, shape.num_query_groups, shape.rotary_base) == (16, 2, 10000)
    assert hm.shape_from_hf_config(_llama_config(head_dim=None, hidden_size=64)).kv_channels == 16


@pytest.mark.parametrize("overrides,message", [
    ({"attention_bias": True}, "attention_bias"),
    ({"mlp_bias": True}, "mlp_bias"),
    ({"num_local_experts": 8}, "mixture of experts"),
    ({"model_type": "mistral"}, "model_type"),
    # scaled RoPE converts (tests/tools/test_rope_parity.py); incomplete or unknown scaling does not
    ({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}, "rope_scaling.high_freq_factor: .* needs it"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4}}, "rope_scaling.factor: .* needs it"),
    ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "'dynamic' does not convert; known: default, linear"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 512}},
     "original_max_position_embeddings \\(512\\) exceeds max_position_embeddings \\(256\\)"),
    ({"hidden_act": "gelu"}, "hidden_act"),
    ({"num_key_value_heads": 3}, "num_query_groups"),
])
def test_unsupported_architectures_are_refused(overrides, message):
    with pytest.raises(ConfigError, match=message):
        hm.shape_from_hf_config(_llama_config(**overrides))


def test_written_config_loads_in_transformers_with_nano_quirks():
    from transformers import LlamaConfig

    config = hm.hf_config_from_shape(NANO, torch.bfloat16, base={"bos_token_id": 7, "rope_scaling": None})
    loaded = LlamaConfig(**config)
    assert (loaded.head_dim, loaded.tie_word_embeddings, loaded.bos_token_id) == (16, True, 7)
    assert hm.shape_from_hf_config(config) == NANO
