"""The parallel section, with Megatron's names so Megatron users feel at home.

Besides the layout it holds what megatron-core's TransformerConfig decides per layer
and Megatron-LM users set beside the layout: activation recomputation, FP8 and TP
communication overlap (`recompute_*`, `fp8*`, `tp_comm_overlap`). What needs
Transformer Engine or a GPU is refused by `check_layout`, before any process starts.

Data parallelism is what remains of the world size after tensor × pipeline ×
context parallelism. Every impossible combination is a `ConfigError` naming the
setting, raised by `check_layout` before any process group exists.
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
import importlib.util
from typing import Literal, Optional

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
    recompute_granularity: Optional[Literal["selective", "full"]] = field(default=None, metadata={
        "help": "Activation recomputation: selective = core attention only, full = whole layers; None = off."})
    recompute_method: Optional[Literal["uniform", "block"]] = field(default=None, metadata={
        "help": "full only: uniform = every group of recompute_num_layers, block = the first N of each stage."})
    recompute_num_layers: Optional[int] = field(default=None, metadata={
        "help": "full only: layers per recomputed group (uniform) or recomputed layers per stage (block)."})
    tp_comm_overlap: bool = field(default=False, metadata={
        "help": "Overlap TP all-gather/reduce-scatter with the GEMMs (Transformer Engine userbuffers; needs SP)."})
    fp8: Optional[Literal["e4m3", "hybrid"]] = field(default=None, metadata={
        "help": "FP8 GEMMs (Transformer Engine): e4m3 everywhere, or hybrid (e5m2 gradients); None = bf16."})
    fp8_recipe: Literal["delayed", "tensorwise", "blockwise"] = field(default="delayed", metadata={
        "help": "FP8 scaling: delayed (amax history), tensorwise (current scaling), blockwise (TE >= 2.3)."})
    fp8_param_gather: bool = field(default=False, metadata={
        "help": "Keep parameters in FP8 and all-gather them in FP8 (needs fp8 and the distributed optimizer)."})
    planned_num_gpus: Optional[int] = field(default=None, metadata={
        "help": "GPUs this layout is planned for: what `kanana train --dry-run` plans memory at (not enforced)."})

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
        self._validate_recompute()
        if self.tp_comm_overlap and not self.sequence_parallel:
            raise ConfigError("tp_comm_overlap needs sequence_parallel (it overlaps SP's all-gather/reduce-scatter)")
        if self.fp8_param_gather and self.fp8 is None:
            raise ConfigError("fp8_param_gather needs fp8 (e4m3 or hybrid)")
        if self.planned_num_gpus is not None and self.planned_num_gpus % self.model_parallel_size:
            raise ConfigError(f"planned_num_gpus ({self.planned_num_gpus}) is not a multiple of TP × PP × CP "
                              f"({self.model_parallel_size})")

    def _validate_recompute(self) -> None:
        if self.recompute_granularity == "full":
            if self.recompute_method is None or self.recompute_num_layers is None:
                raise ConfigError("recompute_granularity: full needs recompute_method (uniform | block) "
                                  "and recompute_num_layers")
            if self.recompute_num_layers < 1:
                raise ConfigError(f"recompute_num_layers must be >= 1, got {self.recompute_num_layers}")
        elif self.recompute_method is not None or self.recompute_num_layers is not None:
            # megatron-core refuses these outside full recomputation; say so before it does
            key = "recompute_method" if self.recompute_method is not None else "recompute_num_layers"
            raise ConfigError(f"{key} applies to recompute_granularity: full only "
                              f"(got recompute_granularity: {self.recompute_granularity})")

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
    check_recompute_layers(parallel, shape)
    check_engine_features(parallel, device)
    if device != "cuda":
        if parallel.sequence_parallel:
            raise ConfigError("sequence_parallel needs GPUs (NCCL collectives); it is not available on CPU")
        if cp > 1:
            raise ConfigError("context_parallel_size > 1 needs GPUs (Transformer Engine attention); not on CPU")
    return ParallelLayout(tensor=tp, pipeline=pp, context=cp, data=world_size // parallel.model_parallel_size,
                          virtual_pipeline=parallel.virtual_pipeline_model_parallel_size)


def check_recompute_layers(parallel: ParallelConfig, shape: ModelShape) -> None:
    """recompute_num_layers counts layers of one model chunk (what one stage builds per VPP chunk)."""
    if parallel.recompute_num_layers is None:
        return
    per_chunk = shape.num_layers // (parallel.pipeline_model_parallel_size * parallel.num_model_chunks)
    if parallel.recompute_num_layers > per_chunk:
        raise ConfigError(f"parallel.recompute_num_layers ({parallel.recompute_num_layers}) exceeds the layers of one "
                          f"model chunk ({shape.num_layers} layers / PP × VPP = {per_chunk})")


def transformer_engine_installed() -> bool:
    return importlib.util.find_spec("transformer_engine") is not None


def check_engine_features(parallel: ParallelConfig, device: str) -> None:
    """FP8 and TP communication overlap are Transformer Engine GPU kernels; megatron-core's local
    spec (what runs without TE, and on CPU) has neither."""
    for key, wanted in (("fp8", parallel.fp8 is not None), ("tp_comm_overlap", parallel.tp_comm_overlap)):
        if not wanted:
            continue
        if device != "cuda":
            raise ConfigError(f"parallel.{key} needs GPUs with Transformer Engine; it is not available on {device}")
        if not transformer_engine_installed():
            raise ConfigError(f"parallel.{key} needs Transformer Engine (import transformer_engine failed); "
                              f"install it or unset parallel.{key}")
    if parallel.fp8 is not None:
        check_fp8_recipe(parallel.fp8_recipe)


# the Transformer Engine recipe class each megatron fp8_recipe needs
_FP8_RECIPE_CLASSES = {"delayed": "DelayedScaling", "tensorwise": "Float8CurrentScaling",
                       "blockwise": "Float8BlockScaling"}


def check_fp8_recipe(recipe: str) -> None:
    from transformer_engine.common import recipe as te_recipe

    if not hasattr(te_recipe, _FP8_RECIPE_CLASSES[recipe]):
        raise ConfigError(f"parallel.fp8_recipe: {recipe} needs transformer_engine.common.recipe."
                          f"{_FP8_RECIPE_CLASSES[recipe]}, which the installed Transformer Engine lacks")
