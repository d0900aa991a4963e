"""The kernels section: which implementation runs each fused op of the model.

    kernels:
      rms_norm: auto          # auto | megatron | torch | triton
      swiglu: auto            # auto | megatron | torch | triton
      rope: megatron          # megatron (the only one wired, see below)
      lm_head_loss: fused     # fused | unfused
      lm_head_impl: auto      # auto | triton | chunked | torch
      lm_head_chunk_size: 1024

"auto" means Kanana's kernels (`kanana_kernels`) with their own dispatch: Triton
on a GPU, the PyTorch reference on CPU, so CPU runs go through the same module
wiring as GPU runs. "megatron" means megatron-core's own module (no kanana code).
The checkpoint layout never depends on these choices: a checkpoint saved with
any of them loads with any other.

With Transformer Engine on a GPU the layer spec is TE's, whose linears fuse the
norm and whose MLP fuses the activation; `rms_norm` and `swiglu` then have no
effect. `lm_head_loss` applies with either spec (megatron builds the output
layer itself, outside the layer spec).
"""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Literal

from megatron_kanana.config.section import ConfigError, Section

LAYER_IMPLS = ("auto", "megatron", "torch", "triton")
ROPE_IMPLS = ("megatron",)


@dataclasses.dataclass(frozen=True)
class KernelsConfig(Section):
    rms_norm: str = field(default="auto", metadata={
        "help": "RMSNorm before attention, before the MLP and at the end of the decoder: auto (kanana kernel: "
                "Triton on GPU, PyTorch reference on CPU), megatron (torch.nn.RMSNorm via megatron-core), "
                "torch (kanana reference), triton (kanana Triton kernel)."})
    swiglu: str = field(default="auto", metadata={
        "help": "MLP activation silu(gate) * up over fc1's [gate; up] output: auto, megatron "
                "(megatron-core's MLP glu / fused bias_swiglu), torch, triton (as for rms_norm)."})
    rope: str = field(default="megatron", metadata={
        "help": "Rotary embedding of Q and K: megatron only. megatron-core applies it inside its "
                "attention module, which has no layer-spec hook for it, so kanana's apply_rope is not wired."})
    lm_head_loss: Literal["fused", "unfused"] = field(default="fused", metadata={
        "help": "fused: output layer + cross-entropy + z-loss from the final hidden states in vocab chunks, "
                "never materialising [tokens, vocab] logits; unfused: megatron's output layer -> logits -> loss."})
    lm_head_impl: Literal["auto", "triton", "chunked", "torch"] = field(default="auto", metadata={
        "help": "Fused LM head implementation: auto (Triton chunks on GPU, PyTorch chunks on CPU), triton, "
                "chunked (PyTorch per-chunk math, bounded memory), torch (full-logits reference, for tests)."})
    lm_head_chunk_size: int = field(default=1024, metadata={
        "help": "Tokens per chunk of the fused LM head: memory is one [chunk, vocab / tp] fp32 block."})

    def validate(self) -> None:
        for name in ("rms_norm", "swiglu"):
            if getattr(self, name) not in LAYER_IMPLS:
                raise ConfigError(f"{name}: {getattr(self, name)!r} is not one of {list(LAYER_IMPLS)}")
        if self.rope not in ROPE_IMPLS:
            raise ConfigError(f"rope: only 'megatron' is wired (megatron-core applies RoPE inside its attention "
                              f"module, which has no spec hook for kanana's apply_rope); got {self.rope!r}")
        if self.lm_head_chunk_size < 1:
            raise ConfigError(f"lm_head_chunk_size must be >= 1, got {self.lm_head_chunk_size}")

    @property
    def fused_lm_head(self) -> bool:
        return self.lm_head_loss == "fused"

    @classmethod
    def megatron_only(cls) -> "KernelsConfig":
        """Every op on megatron-core's own path (no kanana kernel anywhere): the baseline to compare with."""
        return cls(rms_norm="megatron", swiglu="megatron", lm_head_loss="unfused")
