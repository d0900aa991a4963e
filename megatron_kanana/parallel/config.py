"""The parallel section, with Megatron's names so Megatron users feel at home.

Data parallelism is what remains of the world size after tensor × pipeline ×
context parallelism. Every impossible combination is a `ConfigError` naming the
setting, raised by `check_layout` before any process group exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Optional

from megatron_kanana.config.section import ConfigError, Section
from megatron_kanana.models.shape import ModelShape


@dataclasses.dataclass(frozen=True)
class ParallelConfig(Section):
    tensor_model_parallel_size: int = field(default=1, metadata={"help": "Tensor-parallel ranks per layer."})
    pipeline_model_parallel_size: int = field(default=1, metadata={"help": "Pipeline stages."})
    virtual_pipeline_model_parallel_size: Optional[int] = field(
        default=None, metadata={"help": "Model chunks per pipeline stage (interleaved 1F1B); None = plain 1F1B."})
    sequence_parallel: bool = field(default=False, metadata={"help": "Shard norms/dropout along the sequence (GPU, TP > 1)."})
    context_parallel_size: int = field(default=1, metadata={"help": "Ranks splitting the sequence in attention (GPU)."})

    def validate(self) -> None:
        for name in ("tensor_model_parallel_size", "pipeline_model_parallel_size", "context_parallel_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        vpp = self.virtual_pipeline_model_parallel_size
        if vpp is not None:
            if vpp < 1:
                raise ConfigError(f"virtual_pipeline_model_parallel_size must be >= 1, got {vpp}")
            if vpp > 1 and self.pipeline_model_parallel_size < 2:
                raise ConfigError("virtual_pipeline_model_parallel_size > 1 needs pipeline_model_parallel_size >= 2")
        if self.sequence_parallel and self.tensor_model_parallel_size == 1:
            raise ConfigError("sequence_parallel needs tensor_model_parallel_size > 1")

    @property
    def model_parallel_size(self) -> int:
        return self.tensor_model_parallel_size * self.pipeline_model_parallel_size * self.context_parallel_size

    @property
    def num_model_chunks(self) -> int:
        return self.virtual_pipeline_model_parallel_size or 1


@dataclasses.dataclass(frozen=True)
class ParallelLayout:
    """The resolved grid for one world size."""

    tensor: int
    pipeline: int
    context: int
    data: int
    virtual_pipeline: Optional[int]

    @property
    def world_size(self) -> int:
        return self.tensor * self.pipeline * self.context * self.data


def check_layout(parallel: ParallelConfig, shape: ModelShape, world_size: int, device: str) -> ParallelLayout:
    """Every bad (parallel, model, world, device) combination is an error here,
    before any process group is built."""
    tp, pp, cp = parallel.tensor_model_parallel_size, parallel.pipeline_model_parallel_size, parallel.context_parallel_size
    if world_size % parallel.model_parallel_size:
        raise ConfigError(
            f"world size {world_size} is not divisible by tensor_model_parallel_size ({tp}) × "
            f"pipeline_model_parallel_size ({pp}) × context_parallel_size ({cp}) = {parallel.model_parallel_size}"
        )
    if shape.num_attention_heads % tp:
        raise ConfigError(f"num_attention_heads ({shape.num_attention_heads}) is not divisible by "
                          f"tensor_model_parallel_size ({tp})")
    if shape.num_query_groups % tp:
        raise ConfigError(f"num_query_groups ({shape.num_query_groups} KV heads) is not divisible by "
                          f"tensor_model_parallel_size ({tp})")
    if shape.ffn_hidden_size % tp:
        raise ConfigError(f"ffn_hidden_size ({shape.ffn_hidden_size}) is not divisible by "
                          f"tensor_model_parallel_size ({tp})")
    if shape.vocab_size % tp:
        raise ConfigError(f"vocab_size ({shape.vocab_size}) is not divisible by tensor_model_parallel_size ({tp})")
    stages = pp * parallel.num_model_chunks
    if shape.num_layers % stages:
        raise ConfigError(
            f"num_layers ({shape.num_layers}) is not divisible by pipeline_model_parallel_size ({pp}) × "
            f"virtual_pipeline_model_parallel_size ({parallel.num_model_chunks}) = {stages}"
        )
    if device != "cuda":
        if parallel.sequence_parallel:
            raise ConfigError("sequence_parallel needs GPUs (NCCL collectives); it is not available on CPU")
        if cp > 1:
            raise ConfigError("context_parallel_size > 1 needs GPUs (Transformer Engine attention); not on CPU")
    return ParallelLayout(tensor=tp, pipeline=pp, context=cp, data=world_size // parallel.model_parallel_size,
                          virtual_pipeline=parallel.virtual_pipeline_model_parallel_size)
