"""The model section: one dataclass describes every Kanana/Llama-3 shape.

Architecture (Kanana TR App. A.3, Llama 3): pre-norm RMSNorm, SwiGLU MLP,
rotary embeddings (optionally scaled for long context: `rope_scaling`,
models/rope.py), grouped-query attention, no biases. The head dim
(`kv_channels`) is independent of hidden/heads: Kanana Nano has 24 heads of dim
128 on a 1792-wide residual stream.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.models.rope import RopeScaling


@dataclasses.dataclass(frozen=True)
class ModelShape(Section):
    hidden_size: int = field(metadata={"help": "Width of the residual stream."})
    num_layers: int = field(metadata={"help": "Number of transformer layers."})
    num_attention_heads: int = field(metadata={"help": "Number of query heads."})
    num_query_groups: int = field(metadata={"help": "Number of key/value heads (GQA groups)."})
    kv_channels: int = field(metadata={"help": "Head dim of queries, keys and values."})
    ffn_hidden_size: int = field(metadata={"help": "SwiGLU intermediate width."})
    vocab_size: int = field(default=128256, metadata={"help": "Vocabulary size (Llama-3 tokenizer: 128256)."})
    tie_embeddings: bool = field(default=False, metadata={"help": "Share input embedding and output layer."})
    rotary_base: int = field(default=500000, metadata={"help": "RoPE theta."})
    norm_epsilon: float = field(default=1e-5, metadata={"help": "RMSNorm epsilon."})
    max_position_embeddings: int = field(default=8192, metadata={"help": "Longest sequence the model is built for."})
    init_method_std: float = field(default=0.02, metadata={"help": "Std of the normal weight initialisation."})
    rope_scaling: Optional[RopeScaling] = field(default=None, metadata={
        "help": "Long-context RoPE scaling under HF's names (linear, llama3, yarn); null = plain RoPE."})

    def validate(self) -> None:
        for name in ("hidden_size", "num_layers", "num_attention_heads", "num_query_groups",
                     "kv_channels", "ffn_hidden_size", "vocab_size", "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.num_attention_heads % self.num_query_groups:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_query_groups ({self.num_query_groups})"
            )
        if self.kv_channels % 2:
            raise ConfigError(f"kv_channels must be even for rotary embeddings, got {self.kv_channels}")
        if self.norm_epsilon <= 0 or self.init_method_std <= 0:
            raise ConfigError("norm_epsilon and init_method_std must be positive")
        original = self.rope_scaling and self.rope_scaling.original_max_position_embeddings
        if original and original > self.max_position_embeddings:
            raise ConfigError(
                f"rope_scaling.original_max_position_embeddings ({original}) exceeds max_position_embeddings "
                f"({self.max_position_embeddings}): the original window must not be larger than the extended one")

    # -- parameter counts (the formula; a test checks it against a built model) --
    @property
    def embedding_parameters(self) -> int:
        """Input embedding, plus the output layer when untied."""
        return self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)

    @property
    def layer_parameters(self) -> int:
        h, d = self.hidden_size, self.kv_channels
        q, kv = self.num_attention_heads * d, self.num_query_groups * d
        attention = h * q + 2 * h * kv + q * h
        mlp = 3 * h * self.ffn_hidden_size  # gate, up, down
        return attention + mlp + 2 * h  # + two RMSNorm weights

    @property
    def non_embedding_parameters(self) -> int:
        return self.num_layers * self.layer_parameters + self.hidden_size  # + final norm

    @property
    def parameters(self) -> int:
        return self.non_embedding_parameters + self.embedding_parameters

    def flops_per_token(self, seq_length: int) -> int:
        """Training FLOPs per token: 6 × matmul parameters (incl. the output layer)
        + 6 × layers × seq × heads × head_dim for causal attention (QK^T and AV,
        forward and backward, halved by the causal mask)."""
        h = self.hidden_size
        matmul = self.num_layers * (self.layer_parameters - 2 * h) + self.vocab_size * h
        attention = self.num_layers * seq_length * self.num_attention_heads * self.kv_channels
        return 6 * matmul + 6 * attention
