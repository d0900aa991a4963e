"""Hugging Face Llama <-> megatron-core GPTModel: names, fused layouts, config.

Pure functions over tensors and dicts (no I/O, no megatron import), so the
converter, depth up-scaling and pruning share one definition of the mapping.

Megatron's fused layouts (megatron/core/transformer/attention.py,
`get_query_key_value_tensors`; mlp.py):
- `linear_qkv.weight` is [groups, (q_per_group + 2) * head_dim, hidden]
  flattened: for each KV group, that group's query heads, then its key head,
  then its value head. HF's `repeat_kv` gives query head i the KV head
  i // q_per_group, which is exactly that grouping.
- `linear_fc1.weight` is [gate; up] along the output axis (SwiGLU).
- The pre-attention and pre-MLP RMSNorm weights live in the fused linears'
  `layer_norm_weight` (dist-checkpoint keys; the local spec maps its separate
  norms onto those keys).
HF stores q/k in rotate-half layout, which is what megatron's RoPE with
`rotary_interleaved=False` uses, so no permutation is needed (the logits
tests check it).

Layer tensors are named relative to the layer ("self_attention.linear_qkv.weight");
the rest by their full name ("embedding.word_embeddings.weight").
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models import rope
from megatron_kanana.models.rope import RopeScaling
from megatron_kanana.models.shape import ModelShape

EMBEDDING = "embedding.word_embeddings.weight"
FINAL_NORM = "decoder.final_layernorm.weight"
OUTPUT = "output_layer.weight"

QKV = "self_attention.linear_qkv.weight"
PROJ = "self_attention.linear_proj.weight"
ATTN_NORM = "self_attention.linear_qkv.layer_norm_weight"
FC1 = "mlp.linear_fc1.weight"
FC2 = "mlp.linear_fc2.weight"
MLP_NORM = "mlp.linear_fc1.layer_norm_weight"
LAYER_TENSORS = (ATTN_NORM, QKV, PROJ, MLP_NORM, FC1, FC2)

HF_EMBEDDING = "model.embed_tokens.weight"
HF_FINAL_NORM = "model.norm.weight"
HF_OUTPUT = "lm_head.weight"
HF_LAYER_TENSORS = ("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
                    "self_attn.v_proj.weight", "self_attn.o_proj.weight", "post_attention_layernorm.weight",
                    "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")


def hf_layer_prefix(layer: int) -> str:
    return f"model.layers.{layer}."


# ---------------------------------------------------------------- shapes

def layer_tensor_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Megatron's per-layer tensors at TP=1."""
    h, d = shape.hidden_size, shape.kv_channels
    qkv_rows = (shape.num_attention_heads + 2 * shape.num_query_groups) * d
    return {ATTN_NORM: (h,), QKV: (qkv_rows, h), PROJ: (h, shape.num_attention_heads * d),
            MLP_NORM: (h,), FC1: (2 * shape.ffn_hidden_size, h), FC2: (h, shape.ffn_hidden_size)}


def global_tensor_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Megatron's non-layer tensors (the output layer only when untied)."""
    out = {EMBEDDING: (shape.vocab_size, shape.hidden_size), FINAL_NORM: (shape.hidden_size,)}
    if not shape.tie_embeddings:
        out[OUTPUT] = (shape.vocab_size, shape.hidden_size)
    return out


def hf_tensor_shapes(shape: ModelShape) -> dict[str, tuple[int, ...]]:
    """Every tensor an HF LlamaForCausalLM checkpoint of this shape holds."""
    h, d, ffn = shape.hidden_size, shape.kv_channels, shape.ffn_hidden_size
    q, kv = shape.num_attention_heads * d, shape.num_query_groups * d
    per_layer = {"input_layernorm.weight": (h,), "self_attn.q_proj.weight": (q, h),
                 "self_attn.k_proj.weight": (kv, h), "self_attn.v_proj.weight": (kv, h),
                 "self_attn.o_proj.weight": (h, q), "post_attention_layernorm.weight": (h,),
                 "mlp.gate_proj.weight": (ffn, h), "mlp.up_proj.weight": (ffn, h),
                 "mlp.down_proj.weight": (h, ffn)}
    out = {HF_EMBEDDING: (shape.vocab_size, h), HF_FINAL_NORM: (h,)}
    if not shape.tie_embeddings:
        out[HF_OUTPUT] = (shape.vocab_size, h)
    for i in range(shape.num_layers):
        out.update({hf_layer_prefix(i) + k: v for k, v in per_layer.items()})
    return out


# ---------------------------------------------------------------- fused layouts

def fuse_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shape: ModelShape) -> torch.Tensor:
    """HF q/k/v projections -> megatron's group-interleaved linear_qkv weight."""
    groups, d, h = shape.num_query_groups, shape.kv_channels, q.shape[-1]
    per_group = shape.num_attention_heads // groups
    fused = torch.cat([q.reshape(groups, per_group * d, h), k.reshape(groups, d, h), v.reshape(groups, d, h)], dim=1)
    return fused.reshape(-1, h)


def split_qkv(qkv: torch.Tensor, shape: ModelShape) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of `fuse_qkv`."""
    groups, d, h = shape.num_query_groups, shape.kv_channels, qkv.shape[-1]
    per_group = shape.num_attention_heads // groups
    q, k, v = qkv.reshape(groups, (per_group + 2) * d, h).split([per_group * d, d, d], dim=1)
    return q.reshape(-1, h).contiguous(), k.reshape(-1, h).contiguous(), v.reshape(-1, h).contiguous()


def fuse_fc1(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.cat([gate, up], dim=0)


def split_fc1(fc1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gate, up = fc1.chunk(2, dim=0)
    return gate.contiguous(), up.contiguous()


# ---------------------------------------------------------------- per layer

def layer_hf_to_megatron(hf: Mapping[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """One layer: HF names relative to `model.layers.N.` -> megatron names relative to the layer."""
    return {
        ATTN_NORM: hf["input_layernorm.weight"],
        QKV: fuse_qkv(hf["self_attn.q_proj.weight"], hf["self_attn.k_proj.weight"], hf["self_attn.v_proj.weight"], shape),
        PROJ: hf["self_attn.o_proj.weight"],
        MLP_NORM: hf["post_attention_layernorm.weight"],
        FC1: fuse_fc1(hf["mlp.gate_proj.weight"], hf["mlp.up_proj.weight"]),
        FC2: hf["mlp.down_proj.weight"],
    }


def layer_megatron_to_hf(mc: Mapping[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    q, k, v = split_qkv(mc[QKV], shape)
    gate, up = split_fc1(mc[FC1])
    return {
        "input_layernorm.weight": mc[ATTN_NORM],
        "self_attn.q_proj.weight": q, "self_attn.k_proj.weight": k, "self_attn.v_proj.weight": v,
        "self_attn.o_proj.weight": mc[PROJ],
        "post_attention_layernorm.weight": mc[MLP_NORM],
        "mlp.gate_proj.weight": gate, "mlp.up_proj.weight": up, "mlp.down_proj.weight": mc[FC2],
    }


GLOBAL_HF_TO_MEGATRON = {HF_EMBEDDING: EMBEDDING, HF_FINAL_NORM: FINAL_NORM, HF_OUTPUT: OUTPUT}
GLOBAL_MEGATRON_TO_HF = {v: k for k, v in GLOBAL_HF_TO_MEGATRON.items()}


# ---------------------------------------------------------------- whole state dicts

def hf_to_megatron(hf: Mapping[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """A whole HF state dict -> megatron's (TP=1) names, `decoder.layers.N.` for layer tensors.
    For tests and small models; the converter streams per layer instead."""
    out = {GLOBAL_HF_TO_MEGATRON[k]: hf[k] for k in global_hf_names(shape)}
    for i in range(shape.num_layers):
        prefix = hf_layer_prefix(i)
        layer = layer_hf_to_megatron({k[len(prefix):]: v for k, v in hf.items() if k.startswith(prefix)}, shape)
        out.update({f"decoder.layers.{i}.{k}": v for k, v in layer.items()})
    return out


def megatron_to_hf(mc: Mapping[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    out = {GLOBAL_MEGATRON_TO_HF[k]: mc[k] for k in global_tensor_shapes(shape)}
    for i in range(shape.num_layers):
        prefix = f"decoder.layers.{i}."
        layer = layer_megatron_to_hf({k[len(prefix):]: v for k, v in mc.items() if k.startswith(prefix)}, shape)
        out.update({hf_layer_prefix(i) + k: v for k, v in layer.items()})
    return out


def global_hf_names(shape: ModelShape) -> list[str]:
    return [HF_EMBEDDING, HF_FINAL_NORM] + ([] if shape.tie_embeddings else [HF_OUTPUT])


# ---------------------------------------------------------------- config.json

def _rope(config: Mapping[str, Any]) -> tuple[Optional[RopeScaling], int]:
    scaling, theta = rope.from_hf(config)
    theta = 10000.0 if theta is None else theta  # LlamaConfig's default
    if float(theta) != int(theta):
        raise ConfigError(f"rope_theta {theta} is not an integer; ModelShape.rotary_base is an int")
    return scaling, int(theta)


def shape_from_hf_config(config: Mapping[str, Any]) -> ModelShape:
    """An HF config.json (dict) -> ModelShape; anything but a bias-free dense Llama is an error."""
    model_type = config.get("model_type")
    if model_type != "llama":
        raise ConfigError(f"unsupported model_type {model_type!r}: only 'llama' checkpoints convert")
    for flag in ("attention_bias", "mlp_bias"):
        if config.get(flag):
            raise ConfigError(f"unsupported architecture: {flag} is true (Kanana/Llama-3 layers have no biases)")
    for moe in ("num_local_experts", "num_experts", "n_routed_experts"):
        if config.get(moe):
            raise ConfigError(f"unsupported architecture: {moe}={config[moe]} (mixture of experts)")
    if config.get("hidden_act", "silu") != "silu":
        raise ConfigError(f"unsupported hidden_act {config['hidden_act']!r}: the MLP must be SwiGLU (silu)")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        if key not in config:
            raise ConfigError(f"config.json lacks {key!r}")
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    scaling, theta = _rope(config)
    return ModelShape(
        hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"], num_attention_heads=heads,
        num_query_groups=config.get("num_key_value_heads") or heads, kv_channels=head_dim,
        ffn_hidden_size=config["intermediate_size"], vocab_size=config["vocab_size"],
        tie_embeddings=bool(config.get("tie_word_embeddings", True)), rotary_base=theta,
        norm_epsilon=float(config.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        init_method_std=float(config.get("initializer_range", 0.02)), rope_scaling=scaling,
    )


def hf_config_from_shape(shape: ModelShape, dtype: torch.dtype,
                         base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A LlamaConfig-compatible config.json for `shape`. `base` (the source model's
    config, if known) supplies the fields the shape does not hold (token ids, ...)."""
    config = dict(base or {})
    config.pop("rope_scaling", None)
    config.update(
        architectures=["LlamaForCausalLM"], model_type="llama", hidden_act="silu",
        attention_bias=False, mlp_bias=False, pretraining_tp=1,
        hidden_size=shape.hidden_size, num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_attention_heads, num_key_value_heads=shape.num_query_groups,
        head_dim=shape.kv_channels, intermediate_size=shape.ffn_hidden_size, vocab_size=shape.vocab_size,
        tie_word_embeddings=shape.tie_embeddings, rms_norm_eps=shape.norm_epsilon,
        max_position_embeddings=shape.max_position_embeddings, initializer_range=shape.init_method_std,
        # both spellings: transformers >= 5 reads rope_parameters, 4.x rope_theta and rope_scaling
        **rope.to_hf(shape.rope_scaling, float(shape.rotary_base)),
        # transformers 5 reads `dtype`, 4.x `torch_dtype`
        dtype=str(dtype).removeprefix("torch."), torch_dtype=str(dtype).removeprefix("torch."),
    )
    config.setdefault("bos_token_id", None)
    config.setdefault("eos_token_id", None)
    return config
