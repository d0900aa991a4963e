"""Per-GPU memory of a training layout: weights, gradients, optimizer state, activations.

Activations follow Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", §4): per layer, the tensors each op keeps for backward (1 byte an element
for dropout masks). `korthikanti_layer_bytes` is the paper's closed form for its GPT layer
(34·sbh + 5·as²b, split by TP and SP); `layer_activation_bytes` is the same accounting for a
Llama/Kanana layer (GQA, SwiGLU, RMSNorm, no dropout, SDPA/flash core attention that keeps no s²
tensor) as megatron-core runs it, and reduces to the paper's numbers for the GPT layer.

The peak of a step is not the stored tensors alone: it is reached either at the LM head and
loss (every layer's stored tensors plus the loss's [tokens, vocab] working set) or in a layer's
backward (the stored tensors plus that layer's gradients; with full recomputation, plus the
recomputed layers' tensors). `peak_activation_bytes` takes the larger of the two.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

from megatron_kanana.models.shape import ModelShape

FP32 = 4  # log-sum-exp rows and the loss's softmax are fp32 whatever the compute dtype


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
    """What a layer's activations depend on (GPT-3: q = kv = h, f = 4h, not gated, dropout, no RoPE).

    The three implementation facts default to a CUDA run (megatron's bias-SwiGLU fusion, TE's or a
    fused RMSNorm); megatron's local spec on CPU runs them as torch ops that keep more."""

    hidden: int
    heads: int
    q_width: int      # heads × head dim
    kv_width: int     # KV heads × head dim
    ffn: int
    gated: bool = True
    dropout: bool = False
    flash: bool = True  # SDPA / flash attention: no s² tensor kept
    rope: bool = True   # RoPE writes new Q and K: see layer_activation_bytes
    fused_norm: bool = True    # False: torch's composite RMSNorm also keeps x·rsqrt(mean x²)
    fused_swiglu: bool = True  # False: megatron's unfused glu (chunk, silu, mul) keeps 4f, not 2f

    @classmethod
    def of(cls, shape: ModelShape, fused_ops: bool = True) -> "LayerShape":
        return cls(hidden=shape.hidden_size, heads=shape.num_attention_heads,
                   q_width=shape.num_attention_heads * shape.kv_channels,
                   kv_width=shape.num_query_groups * shape.kv_channels, ffn=shape.ffn_hidden_size,
                   fused_norm=fused_ops, fused_swiglu=fused_ops)


def layer_activation_bytes(layer: LayerShape, s: int, b: int, t: int = 1, sequence_parallel: bool = False,
                           selective: bool = False, dtype_bytes: int = 2) -> float:
    """Bytes one layer keeps for backward, activations at `dtype_bytes` (2: bf16). Replicated
    across TP (divided by t only with SP): the two norms' inputs, the QKV and FC1 inputs (the
    norms' outputs), dropout masks. Split by TP: everything between a column- and a row-parallel
    linear."""
    sb, h, e = s * b, layer.hidden, dtype_bytes
    mask = sb * h if layer.dropout else 0
    # composite RMSNorm: x·rsqrt(mean x²) is kept for the weight's gradient, beside x and the output
    norm_extra = 0 if layer.fused_norm else 2 * sb * h
    replicated = e * (2 * sb * h + 2 * sb * h + norm_extra) + 2 * mask  # norm in, QKV/FC1 in, masks
    attention = e * sb * (2 * layer.q_width + 2 * layer.kv_width)  # Q, K, V, proj in
    if layer.rope:
        # megatron's SelfAttention splits the fused QKV GEMM output into views; RoPE (unfused:
        # apply_rope_fusion is off) writes new Q and K, so V keeps the whole [q + 2kv] output
        # alive: its Q and K parts are kept beside the rotated copies (seen in the CPU runs'
        # autograd graphs with SDPA; TE's attention gets the same views, not measured on a GPU)
        attention += e * sb * (layer.q_width + layer.kv_width)
    if layer.flash:
        core = 0 if selective else FP32 * layer.heads * sb  # the log-sum-exp per row
    else:
        core = 0 if selective else (e + (1 + e if layer.dropout else 0)) * layer.heads * s * sb
    # fused bias-SwiGLU keeps its input (fc1's output, 2f); the unfused glu keeps that for silu,
    # and silu's output and x_linear + offset (a new tensor) for the product: 4f
    activation_in = (2 if layer.fused_swiglu else 4) * layer.ffn if layer.gated else layer.ffn
    mlp = e * sb * (activation_in + layer.ffn)  # + FC2 in
    split = attention + core + mlp
    return (replicated + split) / t if sequence_parallel else replicated + split / t


@dataclasses.dataclass(frozen=True)
class LossHead:
    """The LM head and its loss on the last stage."""

    vocab: int
    fused: bool = True        # kanana_kernels' chunked linear + cross-entropy
    chunk_tokens: int = 1024


def logits_bytes(s: int, b: int, vocab: int, t: int, fused: bool, chunk_tokens: int = 1024,
                 dtype_bytes: int = 2) -> float:
    """The LM head's loss working set at its peak, per rank (vocab split by TP).

    Fused (kanana_kernels): counted as one chunk of fp32 logits and its gradient (8 bytes a
    chunk's logit), whatever the compute dtype. An upper bound for the GPU's Triton path, which
    writes the gradient in place over the chunk's logits in the compute dtype; the CPU chunked
    path (torch ops) keeps the unfused path's working set per chunk (benchmarks/README.md). Unfused
    (mcore/loss.py on [tokens, V/t] logits), bytes a logit, the larger of
      forward:  the logits (dtype_bytes) + their fp32 copy in vocab_parallel_logsumexp (none when
                already fp32) + logits − max (fp32) + its exp (fp32, kept for backward);
      backward: that exp + the fp32 logits the target gather keeps + the gather's fp32 gradient;
    i.e. 14 in bf16 and 12 in fp32."""
    if fused:
        return 2 * FP32 * min(chunk_tokens, s * b) * vocab / t
    cast = 0 if dtype_bytes == FP32 else FP32
    forward = dtype_bytes + cast + 2 * FP32
    backward = 3 * FP32
    return max(forward, backward) * s * b * vocab / t


@dataclasses.dataclass(frozen=True)
class Recompute:
    granularity: Optional[str] = None  # None | selective | full
    method: Optional[str] = None       # uniform | block
    num_layers: Optional[int] = None


def stored_bytes(layer: LayerShape, layers_per_stage: int, s: int, b: int, t: int, sp: bool,
                 recompute: Recompute, dtype_bytes: int = 2) -> float:
    """What a stage's layers keep for backward after one micro-batch's forward. Full
    recomputation keeps each checkpointed group's input (uniform: groups of n; block: the
    first n layers one by one, the rest stored whole)."""
    full = layer_activation_bytes(layer, s, b, t, sp, recompute.granularity == "selective", dtype_bytes)
    if recompute.granularity != "full":
        return layers_per_stage * full
    layer_input = dtype_bytes * s * b * layer.hidden / (t if sp else 1)
    n = min(recompute.num_layers or 1, layers_per_stage)
    if recompute.method == "block":
        return n * layer_input + (layers_per_stage - n) * full
    return -(-layers_per_stage // n) * layer_input


def backward_stored_bytes(layer: LayerShape, layers_per_stage: int, s: int, b: int, t: int, sp: bool,
                          recompute: Recompute, dtype_bytes: int = 2) -> float:
    """What one micro-batch's layers hold at the worst point of their backward. Without full
    recomputation: everything stored (the last layer's backward starts with all of it). Uniform
    groups of n: every group's input + the n layers recomputed at once. Block (the first n
    layers checkpointed): the stored layers are back-propagated, and freed, before the first
    recomputation, so n inputs + max(stored layers, one recomputed layer)."""
    stored = stored_bytes(layer, layers_per_stage, s, b, t, sp, recompute, dtype_bytes)
    if recompute.granularity != "full":
        return stored
    full = layer_activation_bytes(layer, s, b, t, sp, False, dtype_bytes)
    n = min(recompute.num_layers or 1, layers_per_stage)
    if recompute.method == "block":
        return stored + (full if n == layers_per_stage else 0)
    return stored + n * full


def backward_transient_bytes(layer: LayerShape, s: int, b: int, t: int, sp: bool, dtype_bytes: int = 2) -> float:
    """A layer's backward holds, beside the stored tensors, the gradient arriving at its output
    and, at the widest point, the gradient of fc1's output ([tokens, 2f/t] gated)."""
    sb = s * b
    incoming = dtype_bytes * sb * layer.hidden / (t if sp else 1)
    return incoming + dtype_bytes * sb * layer.ffn * (2 if layer.gated else 1) / t


def head_input_bytes(layer: LayerShape, s: int, b: int, t: int, sp: bool, dtype_bytes: int = 2) -> float:
    """The final norm's input (the last layer's output) and the output layer's input (the norm's
    output); a composite RMSNorm also keeps x·rsqrt(mean x²)."""
    widths = 2 if layer.fused_norm else 3
    return dtype_bytes * widths * s * b * layer.hidden / (t if sp else 1)


def peak_activation_bytes(layer: LayerShape, layers_per_stage: int, s: int, b: int, t: int, sp: bool,
                          recompute: Recompute, in_flight: float, head: LossHead, dtype_bytes: int = 2,
                          head_in_flight: float = 1.0) -> dict:
    """The activation peak of the busiest rank, split into what is stored at that moment
    ("activations") and the working set that makes it a peak ("transient"). The larger of
      * the LM head / loss on the last stage: `head_in_flight` micro-batches' stored layers (1F1B's
        last stage runs each backward right after its forward) + the head's input + the loss;
      * a layer's backward on the first stage: `in_flight` micro-batches' stored layers (1F1B's
        first stage holds PP of them), the one being back-propagated at its worst point (with the
        recomputed layers), + the backward's gradients.
    With PP = 1 both are the one stage (in_flight = head_in_flight = 1)."""
    stored = stored_bytes(layer, layers_per_stage, s, b, t, sp, recompute, dtype_bytes)
    at_head = {"activations": head_in_flight * stored + head_input_bytes(layer, s, b, t, sp, dtype_bytes),
               "transient": logits_bytes(s, b, head.vocab, t, head.fused, head.chunk_tokens, dtype_bytes)}
    current = backward_stored_bytes(layer, layers_per_stage, s, b, t, sp, recompute, dtype_bytes)
    in_layer = {"activations": (in_flight - 1) * stored + current,
                "transient": backward_transient_bytes(layer, s, b, t, sp, dtype_bytes)}
    return max(at_head, in_layer, key=lambda phase: sum(phase.values()))


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
