"""Activation-based importance (Minitron, with Kanana's refinements): the pure arithmetic.

Forward hooks (`mcore/activations.py`) see activations shaped [seq, batch, n]
and turn them into running statistics with these functions; `finish` turns the
statistics into scores. Per unit (hidden channel, query head, FFN neuron):

    magnitude   |x| per channel / neuron;  ||head output||_2 per query head
    sequence    mean (Kanana) or L2 of the magnitudes over positions   -> one value per sample
    batch       L2 (Kanana) or mean of the per-sample values over all samples
    layers      sum over layers (Kanana: one ranking for all layers) or one ranking per layer

Batch statistics are sums over samples (of squares for L2), so data-parallel
ranks combine them by adding. Block importance of a layer (ShortGPT) is
1 - cos(layer input, layer output), averaged over tokens.

Kanana TR ablation (1.3B, 25B tokens): L2 over batch beats mean (36.41 vs 35.65),
mean over sequence beats L2 (34.25), summing over layers is essential (13.81 without).
"""
from __future__ import annotations

import dataclasses
from typing import Literal

import torch

from megatron_kanana.config.section import ConfigError

BATCH_RULES = ("l2", "mean")
SEQUENCE_RULES = ("mean", "l2")
LAYER_RULES = ("sum", "per-layer")
FFN_STATES = ("intermediate", "gate-up-mean")


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """How activations become scores; the defaults are Kanana's recipe."""

    batch: Literal["l2", "mean"] = "l2"
    sequence: Literal["mean", "l2"] = "mean"
    layers: Literal["sum", "per-layer"] = "sum"
    ffn_state: Literal["intermediate", "gate-up-mean"] = "intermediate"

    def __post_init__(self) -> None:
        for name, allowed in (("batch", BATCH_RULES), ("sequence", SEQUENCE_RULES), ("layers", LAYER_RULES),
                              ("ffn_state", FFN_STATES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"aggregation {name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")


# ---------------------------------------------------------------- per micro-batch

# Per-position work is fp32 (bf16 activations are upcast); sums over positions and
# samples are float64, so scores do not depend on the reduction order (TP vs no TP).

def channel_magnitude(x_SBN: torch.Tensor) -> torch.Tensor:
    return x_SBN.float().abs()


def head_magnitude(x_SBF: torch.Tensor, head_dim: int) -> torch.Tensor:
    """[seq, batch, heads * head_dim] (core attention output) -> [seq, batch, heads]."""
    s, b, f = x_SBF.shape
    return x_SBF.float().reshape(s, b, f // head_dim, head_dim).norm(dim=-1)


def gate_up_magnitude(fc1_SB2F: torch.Tensor) -> torch.Tensor:
    """fc1 output [gate | up] (this rank's halves) -> mean of |gate| and |up| per neuron."""
    gate, up = fc1_SB2F.float().chunk(2, dim=-1)
    return (gate.abs() + up.abs()) / 2


def per_sample(magnitude_SBN: torch.Tensor, sequence: str) -> torch.Tensor:
    """Reduce over positions: [seq, batch, n] -> [batch, n]."""
    if sequence == "mean":
        return magnitude_SBN.sum(dim=0, dtype=torch.float64) / magnitude_SBN.shape[0]
    return magnitude_SBN.pow(2).sum(dim=0, dtype=torch.float64).sqrt()


def batch_statistic(per_sample_BN: torch.Tensor, batch: str) -> torch.Tensor:
    """What a micro-batch adds to the running statistic: [batch, n] -> [n]."""
    per_sample_BN = per_sample_BN.double()
    return per_sample_BN.pow(2).sum(dim=0) if batch == "l2" else per_sample_BN.sum(dim=0)


def block_importance_sum(x_in_SBH: torch.Tensor, x_out_SBH: torch.Tensor) -> tuple[float, int]:
    """(sum over tokens of 1 - cos(input, output), number of tokens)."""
    cos = torch.nn.functional.cosine_similarity(x_in_SBH.float(), x_out_SBH.float(), dim=-1)
    return float((1 - cos).sum(dtype=torch.float64)), cos.numel()


# ---------------------------------------------------------------- final scores

def finish(statistic: torch.Tensor, num_samples: int, batch: str) -> torch.Tensor:
    """Running statistic over all samples -> score."""
    if num_samples < 1:
        raise ValueError("no samples were scored")
    return statistic.sqrt() if batch == "l2" else statistic / num_samples


def across_layers(per_layer_LN: torch.Tensor, layers: str) -> torch.Tensor:
    """[layers, n] -> [n] (sum: one ranking shared by every layer) or [layers, n] unchanged."""
    return per_layer_LN.sum(dim=0) if layers == "sum" else per_layer_LN


def scores_from_statistics(stats: dict[str, torch.Tensor], aggregation: Aggregation) -> dict[str, torch.Tensor]:
    """Gathered statistics (mcore/activations.py `reduce`) -> the tensors of a scores file."""
    samples = int(stats["samples"].reshape(()).item())
    per_norm = finish(stats["hidden"], samples, aggregation.batch)
    heads = finish(stats["heads"], samples, aggregation.batch)
    ffn = finish(stats["ffn"], samples, aggregation.batch)
    block = stats["block"]
    if bool((block[:, 1] == 0).any()):
        raise ValueError("some layers saw no tokens: were all pipeline stages hooked?")
    return {"hidden": per_norm.sum(dim=0), "hidden.per_norm": per_norm,
            "heads": across_layers(heads, aggregation.layers), "heads.per_layer": heads,
            "ffn": across_layers(ffn, aggregation.layers), "ffn.per_layer": ffn,
            "layers": block[:, 0] / block[:, 1]}
