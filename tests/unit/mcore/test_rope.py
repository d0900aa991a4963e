"""mcore/rope.py's YaRN mscales give megatron's cos/sin factor equal to transformers' attention
factor in every case HF distinguishes; Kanana-1.5's published rope_scaling reads and writes back."""
from __future__ import annotations

import pytest

from megatron_kanana.mcore.rope import _megatron_mscales
from megatron_kanana.models import rope

transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("extra", [{}, {"mscale": 0.707}, {"mscale": 0.707, "mscale_all_dim": 0.5},
                                   {"attention_factor": 1.3}, {"attention_factor": 1.0, "mscale": 2.0}])
@pytest.mark.parametrize("factor", [1.5, 4.4, 40.0])
def test_megatron_concentration_factor_is_hf_attention_factor(factor, extra):
    from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import _yarn_get_concentration_factor
    from transformers.modeling_rope_utils import _compute_yarn_parameters

    params = {"rope_type": "yarn", "factor": factor, "original_max_position_embeddings": 32, **extra}
    config = transformers.LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=128,
                                      rope_parameters={"rope_theta": 10000.0, **params})
    _, hf_factor = _compute_yarn_parameters(config)
    scaling = rope.RopeScaling.from_dict(params)
    assert scaling.yarn_attention_factor == pytest.approx(hf_factor, rel=1e-12)
    ours = _yarn_get_concentration_factor(factor, *_megatron_mscales(factor, scaling.mscale, scaling.mscale_all_dim,
                                                                     scaling.attention_factor))
    assert ours == pytest.approx(hf_factor, rel=1e-12)


def test_kanana_1_5_published_rope_scaling_round_trips():
    published = {"type": "yarn", "factor": 4.4, "original_max_position_embeddings": 32768, "beta_fast": 64,
                 "beta_slow": 2}
    scaling, theta = rope.from_hf({"rope_theta": 500000.0, "rope_scaling": published})
    assert theta == 500000.0 and scaling.rope_type == "yarn" and scaling.yarn_beta_fast == 64
    written = rope.to_hf(scaling, theta)
    assert written["rope_scaling"] == {"rope_type": "yarn", "factor": 4.4, "original_max_position_embeddings": 32768,
                                       "beta_fast": 64.0, "beta_slow": 2.0}
    assert written["rope_parameters"] == {**written["rope_scaling"], "rope_theta": 500000.0}
    assert rope.from_hf(written) == (scaling, theta)
    assert rope.from_hf({"rope_theta": 10000.0}) == (None, 10000.0)
