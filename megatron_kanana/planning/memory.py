"""Per-GPU memory of a training layout: weights, gradients, optimizer state, activations.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", §4): per layer, the bytes each op keeps for backward, at 2 bytes an
element (1 for dropout masks). `korthikanti_layer_bytes` is the paper's closed form for its
GPT layer (34·sbh + 5·as²b, split by TP and SP); `layer_activation_bytes` is the same
accounting for a Llama/Kanana layer (GQA, SwiGLU, RMSNorm, no dropout, SDPA/flash core
attention that keeps no s² tensor), and reduces to the paper's numbers for the GPT layer.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from megatron_kanana.models.shape import ModelShape


def korthikanti_layer_bytes(s: int, b: int, h: int, a: int, t: int = 1, sequence_parallel: bool = False,
                            selective: bool = False) -> float:
    """The paper's per-layer activation bytes (eqs. 1-4): sbh(34 + 5as/h) at t = 1;
    sbh(10 + 24/t + 5as/(ht)) with TP; sbh/t·(34 + 5as/h) with TP + SP; selective
    recomputation drops the 5as/h term."""
    attention_scores = 0 if selective else 5 * a * s / h
    if sequence_parallel:
        return s * b * h / t * (34 + attention_scores)
    return s * b * h * (10 + 24 / t + attention_scores / t)


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """What a layer's activations depend on (GPT-3: q = kv = h, f = 4h, not gated, dropout)."""

    hidden: int
    heads: int
    q_width: int      # heads × head dim
    kv_width: int     # KV heads × head dim
    ffn: int
    gated: bool = True
    dropout: bool = False
    flash: bool = True  # SDPA / flash attention: no s² tensor kept

    @classmethod
    def of(cls, shape: ModelShape) -> "LayerShape":
        return cls(hidden=shape.hidden_size, heads=shape.num_attention_heads,
                   q_width=shape.num_attention_heads * shape.kv_channels,
                   kv_width=shape.num_query_groups * shape.kv_channels, ffn=shape.ffn_hidden_size)


def layer_activation_bytes(layer: LayerShape, s: int, b: int, t: int = 1, sequence_parallel: bool = False,
                           selective: bool = False) -> float:
    """Bytes one layer keeps for backward (bf16 activations), Korthikanti's accounting.
    Replicated across TP (divided by t only with SP): the two norms' inputs, the QKV and FC1
    inputs, dropout masks. Split by TP: everything between a column- and a row-parallel linear."""
    sb, h = s * b, layer.hidden
    mask = sb * h if layer.dropout else 0
    replicated = 2 * (2 * sb * h) + 2 * sb * h + 2 * sb * h + 2 * mask  # norms, QKV in, FC1 in, masks
    attention = 2 * sb * layer.q_width + 2 * 2 * sb * layer.kv_width + 2 * sb * layer.q_width  # Q, K, V, proj in
    if layer.flash:
        core = 0 if selective else 4 * layer.heads * sb  # the fp32 log-sum-exp per row
    else:
        core = 0 if selective else (2 + (1 + 2 if layer.dropout else 0)) * layer.heads * s * sb
    mlp = (4 if layer.gated else 2) * sb * layer.ffn + 2 * sb * layer.ffn  # activation input(s), FC2 in
    split = attention + core + mlp
    return (replicated + split) / t if sequence_parallel else replicated + split / t


def logits_bytes(s: int, b: int, vocab: int, t: int, fused: bool, chunk_tokens: int = 1024) -> float:
    """The LM head's loss: unfused keeps bf16 logits plus the fp32 softmax of the vocab-parallel
    cross-entropy (6 bytes a logit); fused (kanana_kernels) holds one chunk of fp32 logits
    and its gradient at a time."""
    if fused:
        return 2 * 4 * min(chunk_tokens, s * b) * vocab / t
    return 6 * s * b * vocab / t


@dataclasses.dataclass(frozen=True)
class Recompute:
    granularity: Optional[str] = None  # None | selective | full
    method: Optional[str] = None       # uniform | block
    num_layers: Optional[int] = None


def stage_activation_bytes(layer: LayerShape, layers_per_stage: int, s: int, b: int, t: int, sp: bool,
                           recompute: Recompute, in_flight: float) -> float:
    """Activations a pipeline stage holds at its peak: `in_flight` micro-batches' worth of
    stored layers (1F1B's first stage holds PP of them) plus, with full recomputation,
    one recomputed group (uniform) or layer (block) during backward. Full recomputation keeps each group's input."""
    full = layer_activation_bytes(layer, s, b, t, sp, selective=recompute.granularity == "selective")
    if recompute.granularity != "full":
        return in_flight * layers_per_stage * full
    layer_input = 2 * s * b * layer.hidden / (t if sp else 1)
    n = min(recompute.num_layers or 1, layers_per_stage)
    if recompute.method == "block":  # the first n layers checkpointed one by one, the rest stored
        stored = n * layer_input + (layers_per_stage - n) * full
        return in_flight * stored + full
    groups = -(-layers_per_stage // n)  # uniform: keep each group's input, recompute a group at a time
    return in_flight * groups * layer_input + n * full


def stage_parameters(shape: ModelShape, tp: int, pp: int) -> int:
    """Parameters on the busiest rank: its layers (split by TP; norms replicated) plus the
    embedding on the first stage and the output layer on the last (both vocab-split by TP);
    the busiest of the two end stages counts (they differ by one norm)."""
    h = shape.hidden_size
    layers = shape.num_layers // pp
    per_layer = (shape.layer_parameters - 2 * h) // tp + 2 * h
    embedding = shape.vocab_size * h // tp
    # PP = 1: the embedding and, untied, the output layer on the one stage; PP > 1: one per end
    # stage (a tied embedding keeps a copy on the last stage)
    ends = embedding * (2 if pp == 1 and not shape.tie_embeddings else 1)
    return layers * per_layer + ends + h  # + the final norm (last stage)


def model_state_bytes(params: int, dp: int, bf16: bool, grad_fp32: bool, distributed_optimizer: bool) -> dict:
    """Weights, gradient buffer (main_grad) and Adam state per rank. bf16: the optimizer keeps an
    fp32 master copy + two moments (12 bytes a parameter); fp32: the two moments (8). The
    distributed optimizer shards them over DP."""
    weights = params * (2 if bf16 else 4)
    grads = params * (4 if (grad_fp32 or not bf16) else 2)
    optimizer = params * (12 if bf16 else 8)
    if distributed_optimizer:
        optimizer /= dp
    return {"weights": weights, "gradients": grads, "optimizer": optimizer}
