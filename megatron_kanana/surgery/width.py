"""Structured width and depth pruning (Minitron, Kanana TR §2.3.3): pure index selection.

    plan = keep_plan(shape, scores, Targets(hidden=3072, ffn=9216, heads=32, drop_layers=0))
    new_qkv = prune_qkv(qkv, shape, plan.hidden, plan.heads_of(layer))

A `KeepPlan` lists, in ascending order, the source indices that survive:
hidden channels (one set for the whole residual stream), FFN neurons and query
heads (one set for every layer, or one per layer when the scores were kept
per layer), and source layers. Query heads are removed in equal numbers from
every KV group (Kanana's GQA alignment: the top heads of each group by score);
KV heads are all kept and K/V weights lose only pruned hidden columns. Keeping
every index reproduces every tensor exactly. `gqa_alignment=False` is Kanana's
ablation (TR Table 15: 20.13 vs 36.41): the top heads over all groups, as a
pruner blind to GQA picks them, laid out in order into equal groups, so a query
head can land beside another group's K/V.

Tensor layouts are megatron's at TP=1 (surgery/hf_mapping.py): linear_qkv is
[groups × (q_per_group + 2) × head_dim, hidden], linear_fc1 is [gate; up].
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Union

import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.shape import ModelShape

Indices = torch.Tensor  # 1-D int64, ascending


@dataclasses.dataclass(frozen=True)
class Targets:
    """The pruned model's widths; None keeps the source's."""

    hidden: Optional[int] = None
    ffn: Optional[int] = None
    heads: Optional[int] = None
    drop_layers: int = 0
    tie_embeddings: bool = False
    gqa_alignment: bool = True  # False: Kanana's ablation, heads chosen across groups


def target_shape(shape: ModelShape, targets: Targets) -> ModelShape:
    """The pruned shape; every impossible target is a ConfigError naming it."""
    hidden = shape.hidden_size if targets.hidden is None else targets.hidden
    ffn = shape.ffn_hidden_size if targets.ffn is None else targets.ffn
    heads = shape.num_attention_heads if targets.heads is None else targets.heads
    for flag, value, source in (("--hidden", hidden, shape.hidden_size), ("--ffn", ffn, shape.ffn_hidden_size),
                                ("--heads", heads, shape.num_attention_heads)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
        if value > source:
            raise ConfigError(f"{flag} {value} exceeds the source model's {source}: pruning only removes")
    groups = shape.num_query_groups
    if heads % groups:
        raise ConfigError(f"--heads {heads} is not a multiple of the {groups} KV groups: the same number of "
                          f"query heads must remain in every group (KV heads are all kept)")
    if not 0 <= targets.drop_layers < shape.num_layers:
        raise ConfigError(f"--drop-layers must be in 0..{shape.num_layers - 1}, got {targets.drop_layers}")
    return shape.replace(hidden_size=hidden, ffn_hidden_size=ffn, num_attention_heads=heads,
                         num_layers=shape.num_layers - targets.drop_layers,
                         tie_embeddings=shape.tie_embeddings or targets.tie_embeddings)


# ---------------------------------------------------------------- index selection

def top_indices(scores: torch.Tensor, k: int) -> Indices:
    """The k highest scores' indices, ascending (ties: the lower index wins, so it is deterministic)."""
    if k > scores.numel():
        raise ConfigError(f"cannot keep {k} of {scores.numel()}")
    order = torch.argsort(-scores.double(), stable=True)
    return order[:k].sort().values


def heads_per_group(scores_H: torch.Tensor, groups: int, keep: int) -> Indices:
    """Keep `keep` query heads in total, keep // groups inside each KV group, by score."""
    per_group = scores_H.numel() // groups
    kept = [g * per_group + top_indices(scores_H[g * per_group:(g + 1) * per_group], keep // groups)
            for g in range(groups)]
    return torch.cat(kept)


def heads_across_groups(scores_H: torch.Tensor, groups: int, keep: int) -> Indices:
    """The ablation: the `keep` top query heads over all groups, whatever group they sit in."""
    return top_indices(scores_H, keep)


def least_important_layers(layer_scores: torch.Tensor, drop: int) -> list[int]:
    """Block importance is 1 - cos(in, out): the layers that change the residual least go first."""
    if drop == 0:
        return []
    return sorted(torch.argsort(layer_scores.double(), stable=True)[:drop].tolist())


@dataclasses.dataclass(frozen=True)
class KeepPlan:
    hidden: Indices
    ffn: Union[Indices, list[Indices]]    # one set, or one per source layer
    heads: Union[Indices, list[Indices]]
    layers: list[int]                     # source layers, in order; output layer j = source layers[j]
    shape: ModelShape                     # the pruned shape
    average_embeddings: bool              # tie by averaging input and output embeddings

    def ffn_of(self, source_layer: int) -> Indices:
        return self.ffn[source_layer] if isinstance(self.ffn, list) else self.ffn

    def heads_of(self, source_layer: int) -> Indices:
        return self.heads[source_layer] if isinstance(self.heads, list) else self.heads

    def to_json(self) -> dict:
        def lst(x):
            return [t.tolist() for t in x] if isinstance(x, list) else x.tolist()
        return {"hidden": lst(self.hidden), "ffn": lst(self.ffn), "heads": lst(self.heads), "layers": self.layers}


def keep_plan(shape: ModelShape, scores: dict[str, torch.Tensor], targets: Targets) -> KeepPlan:
    new = target_shape(shape, targets)
    groups = shape.num_query_groups
    choose_heads = heads_per_group if targets.gqa_alignment else heads_across_groups

    def per(key: str, choose):
        s = scores[key]
        return choose(s) if s.dim() == 1 else [choose(row) for row in s]

    dropped = set(least_important_layers(scores["layers"], targets.drop_layers))
    return KeepPlan(
        hidden=top_indices(scores["hidden"], new.hidden_size),
        ffn=per("ffn", lambda s: top_indices(s, new.ffn_hidden_size)),
        heads=per("heads", lambda s: choose_heads(s, groups, new.num_attention_heads)),
        layers=[i for i in range(shape.num_layers) if i not in dropped],
        shape=new, average_embeddings=targets.tie_embeddings and not shape.tie_embeddings)


# ---------------------------------------------------------------- tensors

def head_rows(heads: Indices, shape: ModelShape) -> Indices:
    """Rows of linear_qkv kept for these query heads (+ every K and V head).

    Output group g holds the kept heads heads[g·k:(g+1)·k] (k per group) beside source
    group g's K and V: with GQA-aligned heads those are group g's own heads; heads chosen
    across groups (the ablation) move to whichever group their position gives them."""
    d, groups = shape.kv_channels, shape.num_query_groups
    per_group = shape.num_attention_heads // groups
    block = (per_group + 2) * d  # one group's rows: its query heads, then K, then V
    kept_per_group = len(heads) // groups
    rows = []
    for g in range(groups):
        for h in heads[g * kept_per_group:(g + 1) * kept_per_group].tolist():
            source_group, q = divmod(int(h), per_group)
            rows += range(source_group * block + q * d, source_group * block + (q + 1) * d)
        rows += list(range(g * block + per_group * d, (g + 1) * block))  # K and V, untouched
    return torch.tensor(rows, dtype=torch.long)


def head_columns(heads: Indices, head_dim: int) -> Indices:
    """Columns of linear_proj holding these heads' outputs."""
    return (heads[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)


def prune_qkv(qkv: torch.Tensor, shape: ModelShape, hidden: Indices, heads: Indices) -> torch.Tensor:
    return qkv.index_select(0, head_rows(heads, shape)).index_select(1, hidden)


def prune_proj(proj: torch.Tensor, shape: ModelShape, hidden: Indices, heads: Indices) -> torch.Tensor:
    return proj.index_select(0, hidden).index_select(1, head_columns(heads, shape.kv_channels))


def prune_fc1(fc1: torch.Tensor, hidden: Indices, ffn: Indices) -> torch.Tensor:
    gate, up = fc1.chunk(2, dim=0)
    return torch.cat([gate.index_select(0, ffn), up.index_select(0, ffn)]).index_select(1, hidden)


def prune_fc2(fc2: torch.Tensor, hidden: Indices, ffn: Indices) -> torch.Tensor:
    return fc2.index_select(0, hidden).index_select(1, ffn)


def prune_norm(weight: torch.Tensor, hidden: Indices) -> torch.Tensor:
    return weight.index_select(0, hidden)


def prune_embedding(rows_VH: torch.Tensor, hidden: Indices) -> torch.Tensor:
    """Embedding or output-layer rows: keep the hidden columns."""
    return rows_VH.index_select(1, hidden)


def tie_by_averaging(embedding: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """Kanana 4.5B -> 2.1B: one matrix for input and output, their mean (in fp32)."""
    return ((embedding.float() + output.float()) / 2).to(embedding.dtype)
