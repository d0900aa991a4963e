"""Model shape + parallel settings -> megatron-core TransformerConfig, layer spec, GPTModel.

    config = transformer_config(shape, parallel, device="cpu")
    chunks = build_model(shape, config)      # one GPTModel per virtual pipeline stage
    chunks = build_model(shape, config, kernels=cfg.kernels)   # with Kanana's kernels
    copy = build_model(shape, config, groups=runtime.duplicate_model_groups())  # own process groups

Layer spec: Transformer Engine's when TE imports on a GPU; otherwise
megatron-core's local spec with its core attention swapped for
`SDPACoreAttention` (never the local unfused attention, which materialises
the score matrix), and, per the kernels section, its RMSNorms (the decoder's
final norm included) and MLP activation swapped for kanana_kernels-backed
modules (mcore/kernel_layers.py). `kernels.lm_head_loss: fused` also makes the
last stage return hidden states for the fused LM-head loss (mcore/fused_head.py).
RoPE (plain or scaled per `shape.rope_scaling`) is megatron-core's, set up by
mcore/rope.py. Both specs' self-attention is `RotatedKeyCacheAttention`
(mcore/attention.py: generation caches keys after RoPE). All variants map to
the same dist-checkpoint keys, so a checkpoint does not depend on which one ran.
"""
from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Optional, Union

import torch
import torch.nn.functional as F
from megatron.core import parallel_state
from megatron.core.models.gpt import GPTModel
from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_local_spec
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.transformer.spec_utils import ModuleSpec
from megatron.core.transformer.transformer_block import TransformerBlockSubmodules, get_num_layers_to_build
from megatron.core.transformer.transformer_config import TransformerConfig

from megatron_kanana.mcore import compat
from megatron_kanana.mcore.attention import RotatedKeyCacheAttention, SDPACoreAttention
from megatron_kanana.mcore.fused_head import install_fused_lm_head
from megatron_kanana.mcore.kernel_layers import KernelRMSNorm, KernelSwiGLUMLP
from megatron_kanana.mcore.rope import gpt_rope_kwargs, scale_frequencies, set_yarn_fields
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig

if TYPE_CHECKING:
    from megatron_kanana.training.kernels_config import KernelsConfig


def transformer_engine_available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("transformer_engine") is not None


def transformer_config(shape: ModelShape, parallel: ParallelConfig, device: str,
                       bf16: Optional[bool] = None, **overrides) -> TransformerConfig:
    """bf16 defaults to True on GPU (fp32 master weights live in the optimizer) and False on CPU."""
    bf16 = (device == "cuda") if bf16 is None else bf16
    dtype = torch.bfloat16 if bf16 else torch.float32
    fused = device == "cuda"  # megatron's fused bias/softmax/RoPE kernels are CUDA-only
    kwargs = dict(
        num_layers=shape.num_layers,
        hidden_size=shape.hidden_size,
        num_attention_heads=shape.num_attention_heads,
        num_query_groups=shape.num_query_groups,
        kv_channels=shape.kv_channels,
        ffn_hidden_size=shape.ffn_hidden_size,
        normalization="RMSNorm",
        layernorm_epsilon=shape.norm_epsilon,
        gated_linear_unit=True,
        activation_func=F.silu,
        add_bias_linear=False,
        add_qkv_bias=False,
        hidden_dropout=0.0,
        attention_dropout=0.0,
        init_method_std=shape.init_method_std,
        tensor_model_parallel_size=parallel.tensor_model_parallel_size,
        pipeline_model_parallel_size=parallel.pipeline_model_parallel_size,
        virtual_pipeline_model_parallel_size=parallel.virtual_pipeline_model_parallel_size,
        sequence_parallel=parallel.sequence_parallel,
        context_parallel_size=parallel.context_parallel_size,
        params_dtype=dtype,
        pipeline_dtype=dtype,
        bf16=bf16,
        use_cpu_initialization=device != "cuda",
        bias_activation_fusion=fused,
        bias_dropout_fusion=fused,
        masked_softmax_fusion=False,
        apply_rope_fusion=False,
        persist_layer_norm=False,
        gradient_accumulation_fusion=False,  # needs apex/TE's fused wgrad kernels
        deallocate_pipeline_outputs=True,
        # gloo matches messages between a pair of ranks by posting order only; a
        # batched isend/irecv at PP=2 (previous rank == next rank) with interleaving
        # can pair an activation with a same-shaped gradient. The unbatched path
        # posts in a fixed even/odd order that pairs them correctly.
        batch_p2p_comm=device == "cuda",
        **recompute_and_fp8_fields(parallel),
    )
    kwargs.update(overrides)
    config = TransformerConfig(**kwargs)
    set_yarn_fields(config, shape)
    return config


def recompute_and_fp8_fields(parallel: ParallelConfig) -> dict:
    """The parallel section's per-layer choices, under TransformerConfig's names. Selective
    recomputation is megatron's default module list (core attention), which checkpoints
    whatever core-attention module the spec holds (SDPACoreAttention on the local spec)."""
    fields = dict(recompute_granularity=parallel.recompute_granularity,
                  recompute_method=parallel.recompute_method,
                  recompute_num_layers=parallel.recompute_num_layers,
                  tp_comm_overlap=parallel.tp_comm_overlap)
    if parallel.fp8 is not None:
        fields.update(fp8=parallel.fp8, fp8_recipe=parallel.fp8_recipe, fp8_param=parallel.fp8_param_gather)
    return fields


def layer_spec(use_transformer_engine: Optional[bool] = None,
               kernels: Optional["KernelsConfig"] = None) -> ModuleSpec:
    """One transformer layer's spec. `kernels` (None = megatron's own modules) applies to the local spec."""
    if use_transformer_engine is None:
        use_transformer_engine = transformer_engine_available()
    if use_transformer_engine:  # TE fuses the norm into its linears and the activation into its MLP
        from megatron.core.models.gpt.gpt_layer_specs import get_gpt_layer_with_transformer_engine_spec

        spec = get_gpt_layer_with_transformer_engine_spec()
        spec.submodules.self_attention.module = RotatedKeyCacheAttention
        return spec
    spec = get_gpt_layer_local_spec(normalization="RMSNorm")
    layer = spec.submodules
    layer.self_attention.module = RotatedKeyCacheAttention
    layer.self_attention.submodules.core_attention = SDPACoreAttention
    norm = kernel_norm_spec(kernels)
    if norm is not None:
        layer.input_layernorm = layer.pre_mlp_layernorm = norm
    if kernels is not None and kernels.swiglu != "megatron":
        layer.mlp = compat.mlp_spec(KernelSwiGLUMLP, compat.mlp_submodules(layer.mlp), impl=kernels.swiglu)
    return spec


def kernel_norm_spec(kernels: Optional["KernelsConfig"]) -> Optional[ModuleSpec]:
    """The kanana_kernels RMSNorm spec, or None where megatron's own norm is wanted."""
    if kernels is None or kernels.rms_norm == "megatron":
        return None
    return ModuleSpec(module=KernelRMSNorm, params={"impl": kernels.rms_norm})


def _decoder_spec(config: TransformerConfig, spec: ModuleSpec,
                  vp_stage: Optional[int]) -> Union[ModuleSpec, TransformerBlockSubmodules]:
    """The layer spec, or the whole block's when the layers use the kernel norm: the final norm
    then uses it too (GPTModel otherwise builds the final norm from a module-global default)."""
    norm = getattr(spec.submodules, "input_layernorm", None)
    if not (isinstance(norm, ModuleSpec) and norm.module is KernelRMSNorm):
        return spec
    num_layers = get_num_layers_to_build(config, vp_stage=vp_stage)
    return TransformerBlockSubmodules(layer_specs=[spec] * num_layers, layer_norm=norm)


def build_model(shape: ModelShape, config: TransformerConfig, spec: Optional[ModuleSpec] = None,
                max_sequence_length: Optional[int] = None,
                kernels: Optional["KernelsConfig"] = None,
                groups: Optional[ProcessGroupCollection] = None) -> list[GPTModel]:
    """One GPTModel per virtual pipeline stage of this rank (a list of one without VPP).

    `groups` (None = megatron's global groups) gives the model its own process
    groups, e.g. `runtime.duplicate_model_groups()` for a second copy whose
    collectives run beside the training model's (a generation thread).

    `kernels` (the kernels config section; None = megatron's own modules and an
    output layer that returns logits) picks the layer modules and the LM head.
    """
    spec = spec or layer_spec(kernels=kernels)
    num_chunks = config.virtual_pipeline_model_parallel_size or 1
    chunks = []
    for vp_stage in range(num_chunks):
        vp = vp_stage if num_chunks > 1 else None
        model = GPTModel(
            config=config,
            transformer_layer_spec=_decoder_spec(config, spec, vp),
            vocab_size=shape.vocab_size,
            max_sequence_length=max_sequence_length or shape.max_position_embeddings,
            pre_process=parallel_state.is_pipeline_first_stage(ignore_virtual=False, vp_stage=vp),
            post_process=parallel_state.is_pipeline_last_stage(ignore_virtual=False, vp_stage=vp),
            parallel_output=True,
            share_embeddings_and_output_weights=shape.tie_embeddings,
            vp_stage=vp,
            pg_collection=groups,
            **gpt_rope_kwargs(shape),
        )
        scale_frequencies(model, shape)
        if torch.cuda.is_available() and not config.use_cpu_initialization:
            model.cuda(torch.cuda.current_device())
        if kernels is not None and kernels.fused_lm_head:
            install_fused_lm_head(model)
        chunks.append(model)
    return chunks