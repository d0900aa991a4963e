"""Core attention through torch's scaled_dot_product_attention.

megatron-core's local spec uses an unfused attention that materialises the
[batch, heads, seq, seq] score matrix: for the Nano shape at sequence 4096 it
ran out of memory on an 80 GB H100 (megatron-core-notes.md). SDPA picks flash
or cuDNN kernels on GPU and a memory-efficient path on CPU, and `enable_gqa`
lets K/V stay at their KV-head count instead of being repeated per query head.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
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
