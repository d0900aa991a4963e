"""ModelShape's RoPE (plain or `rope_scaling`) -> megatron-core's rotary embeddings.

    kwargs = gpt_rope_kwargs(shape)          # GPTModel(..., **kwargs)
    set_yarn_fields(config, shape)           # on the TransformerConfig, before GPTModel
    scale_frequencies(model, shape)          # after GPTModel: llama3's banded frequencies

Each variant goes through megatron-core's own code, matched to transformers'
`modeling_rope_utils` (the HF parity tests check logits to 1e-5):
- linear: `seq_len_interpolation_factor` (positions / factor; HF divides the
  frequencies instead, the same angles up to rounding).
- llama3: `RotaryEmbedding._apply_scaling`, called with all four of HF's
  parameters: GPTModel's `rope_scaling=True` passes only the factor and keeps
  megatron's defaults (1, 4, 8192) for the rest.
- yarn: `position_embedding_type="yarn"` (YarnRotaryEmbedding), which reads its
  parameters from `yarn_*` attributes of the TransformerConfig (GPTModel and
  attention both getattr them; TransformerConfig declares none). Megatron's
  attention multiplies cos/sin by `get_mscale(f, yarn_mscale) /
  get_mscale(f, yarn_mscale_all_dim)`, while HF uses an explicit
  `attention_factor` if given and the ratio only when both mscales are set; the
  two mscales are chosen so megatron's product is HF's attention factor.
"""
from __future__ import annotations

import math

import torch
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_kanana.models.shape import ModelShape


def gpt_rope_kwargs(shape: ModelShape) -> dict:
    scaling = shape.rope_scaling
    kwargs = dict(position_embedding_type="rope", rotary_base=shape.rotary_base)
    if scaling is not None and scaling.rope_type == "yarn":
        kwargs["position_embedding_type"] = "yarn"
    if scaling is not None and scaling.rope_type == "linear":
        kwargs["seq_len_interpolation_factor"] = scaling.factor
    return kwargs


def set_yarn_fields(config: TransformerConfig, shape: ModelShape) -> None:
    scaling = shape.rope_scaling
    if scaling is None or scaling.rope_type != "yarn":
        return
    mscale, mscale_all_dim = _megatron_mscales(scaling.factor, scaling.mscale, scaling.mscale_all_dim,
                                               scaling.attention_factor)
    config.yarn_rotary_scaling_factor = scaling.factor
    config.yarn_original_max_position_embeddings = scaling.original_max_position_embeddings
    config.yarn_beta_fast = scaling.yarn_beta_fast
    config.yarn_beta_slow = scaling.yarn_beta_slow
    config.yarn_mscale = mscale
    config.yarn_mscale_all_dim = mscale_all_dim
    config.yarn_correction_range_round_to_int = scaling.yarn_truncate


def _megatron_mscales(factor: float, mscale, mscale_all_dim, attention_factor) -> tuple[float, float]:
    """(yarn_mscale, yarn_mscale_all_dim) whose megatron concentration factor is HF's attention factor.
    mscale_all_dim 0 makes megatron's denominator get_mscale(f, 0) = 1 exactly."""
    if attention_factor is not None:  # 0.1 * m * ln f + 1 = attention_factor (factor > 1 is validated)
        return (attention_factor - 1.0) / (0.1 * math.log(factor)), 0.0
    if mscale and mscale_all_dim:
        return float(mscale), float(mscale_all_dim)
    return 1.0, 0.0  # HF: get_mscale(factor), whatever a lone mscale says


def scale_frequencies(model: torch.nn.Module, shape: ModelShape) -> None:
    scaling = shape.rope_scaling
    if scaling is None or scaling.rope_type != "llama3" or getattr(model, "rotary_pos_emb", None) is None:
        return
    rope = model.rotary_pos_emb
    rope.inv_freq = rope._apply_scaling(
        rope.inv_freq, factor=scaling.factor, low_freq_factor=scaling.low_freq_factor,
        high_freq_factor=scaling.high_freq_factor,
        original_max_position_embeddings=scaling.original_max_position_embeddings)
    rope.forward.cache_clear()  # nothing should be cached yet; never serve plain-RoPE tables
