"""ModelShape's RoPE (plain or `rope_scaling`) -> megatron-core's rotary embeddings.

    kwargs = gpt_rope_kwargs(shape)          # GPTModel(..., **kwargs)
    set_yarn_fields(config, shape)           # on the TransformerConfig, before GPTModel
    scale_frequencies(model, shape)          # after GPTModel: llama3's banded frequencies
    switch_rope(chunks, shape)               # a built model to another RoPE, in place (a stage hand-off)

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
from megatron.core.models.common.embeddings.rotary_pos_embedding import RotaryEmbedding
from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import (
    YarnRotaryEmbedding,
    _yarn_get_concentration_factor_from_config,
)
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


_YARN_FIELDS = ("yarn_rotary_scaling_factor", "yarn_original_max_position_embeddings", "yarn_beta_fast",
                "yarn_beta_slow", "yarn_mscale", "yarn_mscale_all_dim", "yarn_correction_range_round_to_int")


def set_yarn_fields(config: TransformerConfig, shape: ModelShape) -> None:
    """The yarn_* attributes of `shape`'s YaRN; none for another RoPE (attention multiplies cos/sin
    by the YaRN factor whenever `yarn_rotary_scaling_factor` exists, so they must go with YaRN)."""
    for name in _YARN_FIELDS:
        if hasattr(config, name):
            delattr(config, name)
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


def switch_rope(chunks: list, shape: ModelShape) -> None:
    """Give built model chunks `shape`'s RoPE in place: the TransformerConfig's yarn_* fields
    (shared by GPTModel and its attention layers), the YaRN cos/sin factor where attention
    caches it, and a new rotary module, made with the arguments GPTModel.__init__ gives it
    (megatron-core 0.16-0.19). No parameter changes:
    the rotary tables are computed, never learned, so weights, gradients and optimizer state
    carry over as they are (a context-extension stage hand-off)."""
    for chunk in chunks:
        model = getattr(chunk, "module", chunk)  # under megatron's DDP wrapper
        config, old = model.config, getattr(model, "rotary_pos_emb", None)
        if old is None:
            raise ValueError("switch_rope: the model has no rotary embedding")
        set_yarn_fields(config, shape)
        kwargs = gpt_rope_kwargs(shape)
        common = dict(kv_channels=config.kv_channels, rotary_percent=model.rotary_percent,
                      rotary_interleaved=config.rotary_interleaved,
                      seq_len_interpolation_factor=kwargs.get("seq_len_interpolation_factor"),
                      rotary_base=shape.rotary_base, use_cpu_initialization=config.use_cpu_initialization)
        if kwargs["position_embedding_type"] == "yarn":
            rope = YarnRotaryEmbedding(
                scaling_factor=config.yarn_rotary_scaling_factor,
                original_max_position_embeddings=config.yarn_original_max_position_embeddings,
                beta_fast=config.yarn_beta_fast, beta_slow=config.yarn_beta_slow, mscale=config.yarn_mscale,
                mscale_all_dim=config.yarn_mscale_all_dim,
                correction_range_round_to_int=config.yarn_correction_range_round_to_int, **common)
        else:
            rope = RotaryEmbedding(rope_scaling=False, cp_group=model.pg_collection.cp, **common)
        old.forward.cache_clear()  # forward is an lru_cache keyed by the module: drop the old tables
        model.rotary_pos_emb = rope
        model.position_embedding_type = kwargs["position_embedding_type"]
        model.rotary_base = shape.rotary_base
        model.max_position_embeddings = model.max_sequence_length = shape.max_position_embeddings
        model.rotary_pos_emb_cache = {}
        scale_frequencies(model, shape)
        factor = _yarn_get_concentration_factor_from_config(config)
        for module in model.modules():  # 0.19's Attention reads the factor once, at construction
            if hasattr(module, "_yarn_concentration_factor"):
                module._yarn_concentration_factor = factor
