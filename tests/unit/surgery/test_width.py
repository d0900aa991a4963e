"""Width/depth pruning as index selection (surgery/width.py, sources.PrunedSource)."""
from __future__ import annotations

import pytest
import torch

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import hf_mapping as hm, sources, width

# Nano's head layout (24 query heads in 8 KV groups) at toy widths
NANO_LIKE = ModelShape(hidden_size=20, num_layers=3, num_attention_heads=24, num_query_groups=8, kv_channels=4,
                       ffn_hidden_size=12, vocab_size=16, tie_embeddings=False)


class DictSource:
    """A ModelSource over an in-memory megatron state dict."""

    def __init__(self, shape: ModelShape, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.shape, self.dtype = shape, torch.float32
        self.globals = {k: torch.randn(s, generator=g) for k, s in hm.global_tensor_shapes(shape).items()}
        self.layers = [{k: torch.randn(s, generator=g) for k, s in hm.layer_tensor_shapes(shape).items()}
                       for _ in range(shape.num_layers)]

    def global_tensor(self, name, rows=None):
        t = self.globals[name]
        return t if rows is None else t[rows[0]:rows[1]]

    def layer_tensor(self, layer, name):
        return self.layers[layer][name]


def scores_for(shape: ModelShape, seed: int = 1, per_layer: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lead = (shape.num_layers,) if per_layer else ()
    return {"hidden": torch.rand(shape.hidden_size, generator=g),
            "heads": torch.rand(*lead, shape.num_attention_heads, generator=g),
            "ffn": torch.rand(*lead, shape.ffn_hidden_size, generator=g),
            "layers": torch.rand(shape.num_layers, generator=g)}


def test_keeping_everything_reproduces_every_tensor():
    src = DictSource(NANO_LIKE)
    plan = width.keep_plan(NANO_LIKE, scores_for(NANO_LIKE), width.Targets())
    pruned = sources.PrunedSource(src, plan)
    assert pruned.shape == NANO_LIKE
    for name in hm.global_tensor_shapes(NANO_LIKE):
        assert torch.equal(pruned.global_tensor(name), src.global_tensor(name))
        assert torch.equal(pruned.global_tensor(name, (4, 8)) if name != hm.FINAL_NORM else pruned.global_tensor(name),
                           src.global_tensor(name, (4, 8)) if name != hm.FINAL_NORM else src.global_tensor(name))
    for layer in range(NANO_LIKE.num_layers):
        for name in hm.LAYER_TENSORS:
            assert torch.equal(pruned.layer_tensor(layer, name), src.layer_tensor(layer, name))


@pytest.mark.parametrize("prune_hidden", [False, True])
def test_24_to_16_heads_keeps_two_per_group_and_kv_unchanged(prune_hidden):
    src, scores = DictSource(NANO_LIKE), scores_for(NANO_LIKE)
    plan = width.keep_plan(NANO_LIKE, scores, width.Targets(heads=16, hidden=14 if prune_hidden else None))
    assert plan.shape.num_attention_heads == 16 and plan.shape.num_query_groups == 8
    kept = plan.heads.tolist()
    assert [sum(1 for h in kept if h // 3 == g) for g in range(8)] == [2] * 8
    for g in range(8):  # the top two of the group's three heads by score
        group = scores["heads"][3 * g:3 * g + 3]
        assert sorted(h - 3 * g for h in kept if h // 3 == g) == sorted(group.argsort(descending=True)[:2].tolist())
    pruned = sources.PrunedSource(src, plan)
    cols = plan.hidden
    for layer in range(NANO_LIKE.num_layers):
        q0, k0, v0 = hm.split_qkv(src.layer_tensor(layer, hm.QKV), NANO_LIKE)
        q1, k1, v1 = hm.split_qkv(pruned.layer_tensor(layer, hm.QKV), plan.shape)
        assert torch.equal(k1, k0[:, cols]) and torch.equal(v1, v0[:, cols])
        d = NANO_LIKE.kv_channels
        for new, old in enumerate(kept):
            assert torch.equal(q1[new * d:(new + 1) * d], q0[old * d:(old + 1) * d][:, cols])
        proj = pruned.layer_tensor(layer, hm.PROJ)
        assert proj.shape == (plan.shape.hidden_size, 16 * d)
        assert torch.equal(proj[:, d:2 * d], src.layer_tensor(layer, hm.PROJ)[cols][:, kept[1] * d:(kept[1] + 1) * d])


def test_ffn_hidden_depth_and_tying():
    src, scores = DictSource(NANO_LIKE), scores_for(NANO_LIKE, per_layer=True)
    plan = width.keep_plan(NANO_LIKE, scores, width.Targets(hidden=10, ffn=5, heads=8, drop_layers=1,
                                                            tie_embeddings=True))
    assert plan.layers == sorted(set(range(3)) - {int(scores["layers"].argmin())})
    assert plan.shape.tie_embeddings and hm.OUTPUT not in hm.global_tensor_shapes(plan.shape)
    pruned = sources.PrunedSource(src, plan)
    h = plan.hidden
    assert torch.equal(pruned.global_tensor(hm.EMBEDDING),
                       (src.global_tensor(hm.EMBEDDING)[:, h] + src.global_tensor(hm.OUTPUT)[:, h]) / 2)
    assert torch.equal(pruned.global_tensor(hm.FINAL_NORM), src.global_tensor(hm.FINAL_NORM)[h])
    for j, layer in enumerate(plan.layers):  # per-layer scores: each layer keeps its own neurons
        ffn = scores["ffn"][layer].argsort(descending=True)[:5].sort().values
        gate, up = src.layer_tensor(layer, hm.FC1).chunk(2)
        assert torch.equal(pruned.layer_tensor(j, hm.FC1), torch.cat([gate[ffn], up[ffn]])[:, h])
        assert torch.equal(pruned.layer_tensor(j, hm.FC2), src.layer_tensor(layer, hm.FC2)[h][:, ffn])
        assert torch.equal(pruned.layer_tensor(j, hm.MLP_NORM), src.layer_tensor(layer, hm.MLP_NORM)[h])
    assert {tuple(v.shape) for v in [pruned.layer_tensor(0, n) for n in hm.LAYER_TENSORS]} == \
        set(hm.layer_tensor_shapes(plan.shape).values())


@pytest.mark.parametrize("targets,message", [
    (width.Targets(heads=20), "not a multiple of the 8 KV groups"),
    (width.Targets(heads=32), "exceeds the source model's 24"),
    (width.Targets(hidden=21), "--hidden 21 exceeds"),
    (width.Targets(ffn=0), "--ffn must be >= 1"),
    (width.Targets(drop_layers=3), "--drop-layers must be in 0..2"),
    (width.Targets(drop_layers=-1), "--drop-layers"),
])
def test_impossible_targets(targets, message):
    with pytest.raises(ConfigError, match=message):
        width.keep_plan(NANO_LIKE, scores_for(NANO_LIKE), targets)


def test_top_indices_are_sorted_and_ties_deterministic():
    assert width.top_indices(torch.tensor([1.0, 3.0, 3.0, 0.5]), 2).tolist() == [1, 2]
    assert width.top_indices(torch.tensor([2.0, 2.0, 2.0]), 1).tolist() == [0]
    assert width.least_important_layers(torch.tensor([0.3, 0.1, 0.2]), 2) == [1, 2]


def test_without_gqa_alignment_the_top_heads_overall_fill_the_groups_in_order():
    # Kanana's ablation (TR Table 15): heads chosen across groups; group 0 has the three best heads
    shape = NANO_LIKE
    scores = scores_for(shape)
    scores["heads"] = torch.arange(24, 0, -1, dtype=torch.float)  # heads 0, 1, 2, ... best first
    plan = width.keep_plan(shape, scores, width.Targets(heads=8, gqa_alignment=False))
    assert plan.heads.tolist() == list(range(8))  # not one per group
    src = DictSource(shape)
    qkv = src.layer_tensor(0, hm.QKV)
    d, block = shape.kv_channels, (3 + 2) * shape.kv_channels
    out = sources.PrunedSource(src, plan).layer_tensor(0, hm.QKV)
    # output group 1 holds source head 1 (in group 0) beside source group 1's K and V
    assert torch.equal(out[(1 + 2) * d:(1 + 2) * d + d], qkv[d:2 * d])
    assert torch.equal(out[(1 + 2) * d + d:2 * (1 + 2) * d], qkv[block + 3 * d:2 * block])
    aligned = width.keep_plan(shape, scores, width.Targets(heads=8))
    assert aligned.heads.tolist() == [3 * g for g in range(8)]
