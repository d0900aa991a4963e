"""Attention modules: core attention through torch's scaled_dot_product_attention, and a
self-attention that caches rotated keys when generating.

megatron-core's local spec uses an unfused attention that materialises the
[batch, heads, seq, seq] score matrix: for the Nano shape at sequence 4096 it
ran out of memory on an 80 GB H100 (megatron-core-notes.md). SDPA picks flash
or cuDNN kernels on GPU and a memory-efficient path on CPU, and `enable_gqa`
lets K/V stay at their KV-head count instead of being repeated per query head.

megatron-core's static-batching KV cache (mcore/generate.py) stores keys before
RoPE and rotates the whole cache again at every decode step: cos and sin of a
[len, B, 1, D] table and the rotation itself, per layer, for every token
generated. `RotatedKeyCacheAttention` rotates each key once, before it is
cached (as HF and vLLM do); the rotation is elementwise, so every cached key is
bit-identical to what megatron-core would have rotated at that step.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from megatron.core.models.common.embeddings.rope_utils import apply_rotary_pos_emb
from megatron.core.models.common.embeddings.yarn_rotary_pos_embedding import (
    _yarn_get_concentration_factor_from_config,
)
from megatron.core.transformer.attention import SelfAttention
from megatron.core.transformer.enums import AttnMaskType
from megatron.core.transformer.module import MegatronModule
from megatron.core.transformer.transformer_config import TransformerConfig


class SDPACoreAttention(MegatronModule):
    """Drop-in for megatron's DotProductAttention (same constructor and forward)."""

    def __init__(self, config: TransformerConfig, layer_number: int, attn_mask_type: AttnMaskType,
                 attention_type: str, attention_dropout: Optional[float] = None,
                 softmax_scale: Optional[float] = None, cp_comm_type: Optional[str] = None,
                 pg_collection=None):
        super().__init__(config=config)
        if config.context_parallel_size != 1:
            raise ValueError("SDPACoreAttention does not do context parallelism; use Transformer Engine")
        self.attn_mask_type = attn_mask_type
        self.dropout_p = config.attention_dropout if attention_dropout is None else attention_dropout
        self.softmax_scale = softmax_scale or 1.0 / math.sqrt(config.kv_channels)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                attention_mask: Optional[torch.Tensor], attn_mask_type: Optional[AttnMaskType] = None,
                attention_bias: Optional[torch.Tensor] = None, packed_seq_params=None) -> torch.Tensor:
        if packed_seq_params is not None or attention_bias is not None:
            raise NotImplementedError("packed sequences and attention bias need Transformer Engine attention")
        # megatron layout [seq, batch, heads, dim] -> SDPA's [batch, heads, seq, dim]
        q, k, v = (t.permute(1, 2, 0, 3) for t in (query, key, value))
        mask_type = attn_mask_type or self.attn_mask_type
        sq, sk = q.shape[2], k.shape[2]
        mask, causal = None, False
        if attention_mask is not None:
            mask = ~attention_mask  # megatron: True = masked out; SDPA: True = attend
            if mask_type == AttnMaskType.causal:  # e.g. packed sequences: block-diagonal AND causal
                mask = mask & torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - sq)
        elif mask_type == AttnMaskType.causal and sq == sk:
            causal = True
        elif sq > 1:  # decoding a block against a longer KV cache: causal, bottom-right aligned
            mask = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril(diagonal=sk - sq)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=self.softmax_scale,
            dropout_p=self.dropout_p if self.training else 0.0, enable_gqa=k.shape[1] != q.shape[1],
        )
        # back to [seq, batch, heads * dim], what linear_proj expects
        return out.permute(2, 0, 1, 3).reshape(sq, q.shape[0], -1)


class RotatedKeyCacheAttention(SelfAttention):
    """megatron's SelfAttention whose static-batching KV cache holds keys after RoPE.

    Only `_adjust_key_value_for_inference` changes, and only for a static-batching
    context with a rotary table: the step's new keys are rotated (by their own
    slots of the table) before megatron-core caches them, and the key half of the
    returned table is None, which makes the forward skip the key rotation. Training,
    scoring and every other path run megatron's code unchanged."""

    def _adjust_key_value_for_inference(self, inference_context, query, key, value, rotary_pos_emb,
                                        *args, **kwargs):
        if (inference_context is None or not inference_context.is_static_batching()
                or not isinstance(rotary_pos_emb, tuple) or rotary_pos_emb[1] is None):
            return super()._adjust_key_value_for_inference(inference_context, query, key, value,
                                                           rotary_pos_emb, *args, **kwargs)
        start = inference_context.sequence_len_offset
        key = apply_rotary_pos_emb(key, rotary_pos_emb[1][start:start + key.size(0)], config=self.config,
                                   mscale=_yarn_get_concentration_factor_from_config(self.config),
                                   cp_group=self.pg_collection.cp)
        query, key, value, rotary_pos_emb, mask_type, block_table = super()._adjust_key_value_for_inference(
            inference_context, query, key, value, rotary_pos_emb, *args, **kwargs)
        return query, key, value, (rotary_pos_emb[0], None), mask_type, block_table
