"""Layer-spec modules backed by Kanana's kernels (`kanana_kernels`): RMSNorm and the SwiGLU MLP.

Each is a drop-in for the megatron-core module in the local layer spec (same
constructor, same forward contract, same parameter names), chosen by
`ModuleSpec` in mcore/model.py, so a checkpoint does not depend on which one ran:
- `KernelRMSNorm`: input_layernorm, pre_mlp_layernorm and the decoder's final
  norm. Its one parameter is `weight`, like torch.nn.RMSNorm's, so the local
  spec's `sharded_state_dict_keys_map` (input_layernorm. ->
  self_attention.linear_qkv.layer_norm_) maps it to the same keys.
- `KernelSwiGLUMLP`: megatron's MLP with the activation step replaced by
  `kanana_kernels.swiglu` over fc1's [gate; up] output. megatron's MLP picks
  its activation from global config flags (bias_activation_fusion,
  use_te_activation_func) that also steer the TE spec, so the clean hook is a
  subclass that owns its forward; linear_fc1/linear_fc2 and their sharded state
  dict (the stride-2 [gate; up] split) are inherited unchanged.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
import torch.nn.functional as F
from kanana_kernels import rms_norm, swiglu
from megatron.core.transformer.mlp import MLP, MLPSubmodules
from megatron.core.transformer.transformer_config import TransformerConfig


class KernelRMSNorm(torch.nn.Module):
    """RMSNorm through kanana_kernels.rms_norm (constructor of megatron's norm modules)."""

    def __init__(self, config: TransformerConfig, hidden_size: int, eps: float = 1e-5, impl: str = "auto", **_):
        super().__init__()
        if config.normalization != "RMSNorm":
            raise ValueError(f"KernelRMSNorm needs normalization='RMSNorm', got {config.normalization!r}")
        self.eps, self.impl = eps, impl
        # fp32 like torch.nn.RMSNorm (what the megatron path builds), so both start identical
        self.weight = torch.nn.Parameter(torch.ones(hidden_size))
        # megatron all-reduces the grads of params flagged sequence_parallel (the norm sees a sequence shard)
        self.weight.sequence_parallel = config.sequence_parallel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed, _ = rms_norm(x, self.weight, self.eps, impl=self.impl)
        return normed

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}, impl={self.impl}"


class KernelSwiGLUMLP(MLP):
    """megatron's MLP (fc1 -> activation -> fc2) with kanana_kernels.swiglu as the activation."""

    def __init__(self, config: TransformerConfig, submodules: MLPSubmodules, is_expert: bool = False,
                 input_size: Optional[int] = None, ffn_hidden_size: Optional[int] = None,
                 tp_group: Optional[torch.distributed.ProcessGroup] = None, impl: str = "auto"):
        if not config.gated_linear_unit or config.activation_func is not F.silu:
            raise ValueError("KernelSwiGLUMLP needs gated_linear_unit=True and activation_func=F.silu (SwiGLU)")
        super().__init__(config, submodules, is_expert=is_expert, input_size=input_size,
                         ffn_hidden_size=ffn_hidden_size or config.ffn_hidden_size, tp_group=tp_group)
        self.swiglu_impl = impl

    def forward(self, hidden_states: torch.Tensor, per_token_scale: Optional[torch.Tensor] = None, **kwargs):
        if per_token_scale is not None:
            raise NotImplementedError("KernelSwiGLUMLP is a dense MLP; per_token_scale is for MoE experts")
        fc1_out, fc1_bias = self.linear_fc1(hidden_states)
        if fc1_bias is not None:
            fc1_out = fc1_out + fc1_bias
        return self.linear_fc2(swiglu(fc1_out, impl=self.swiglu_impl))


class _QuietUnknownMLP(logging.Filter):
    """TransformerLayer recognises MLP classes by identity and warns, once per layer, that a
    subclass is "unknown"; it then builds it with the default TP group, which is what we want."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Unknown MLP type" not in record.getMessage()


logging.getLogger("megatron.core.transformer.transformer_layer").addFilter(_QuietUnknownMLP())
