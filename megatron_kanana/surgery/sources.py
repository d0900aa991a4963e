"""Model sources: where converted or up-scaled tensors come from, one tensor at a time.

Every writer (megatron dist checkpoint, HF directory) pulls tensors by
megatron name from a `ModelSource`, so conversion and depth up-scaling never
hold more than a tensor or two of the model:

    source.global_tensor("embedding.word_embeddings.weight", rows=(0, 4096))   # a row block
    source.layer_tensor(3, "self_attention.linear_qkv.weight")

Big (vocabulary-sized) tensors can be asked for in row blocks, so that neither
direction ever holds a whole embedding. Sources: `HFSource` (an HF directory, fused on the fly), the megatron
dist-checkpoint source in `megatron_kanana.mcore.dist_ckpt_reader`, and
`RemappedSource` (depth up-scaling: output layer j reads source layer map[j]),
`PrunedSource` (width/depth pruning: index selection by a `width.KeepPlan`).
`hf_tensor_getter` turns any source into HF-named tensors for the HF writer.
"""
from __future__ import annotations

import re
from typing import Callable, Optional, Protocol

import torch

from megatron_kanana.checkpointing.hf_dir import HFReader
from megatron_kanana.log import get_logger
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import depth, hf_mapping as hm, width

log = get_logger(__name__)


class ModelSource(Protocol):
    shape: ModelShape
    dtype: torch.dtype

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor: ...

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor: ...


class HFSource:
    """An HF Llama directory seen through megatron names."""

    def __init__(self, reader: HFReader):
        self.reader, self.shape, self.dtype = reader, reader.shape, reader.dtype

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        return self.reader.tensor(hm.GLOBAL_MEGATRON_TO_HF[name], rows)

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        p = hm.hf_layer_prefix(layer)
        get = self.reader.tensor
        if name == hm.QKV:
            return hm.fuse_qkv(get(p + "self_attn.q_proj.weight"), get(p + "self_attn.k_proj.weight"),
                               get(p + "self_attn.v_proj.weight"), self.shape)
        if name == hm.FC1:
            return hm.fuse_fc1(get(p + "mlp.gate_proj.weight"), get(p + "mlp.up_proj.weight"))
        single = {hm.ATTN_NORM: "input_layernorm.weight", hm.PROJ: "self_attn.o_proj.weight",
                  hm.MLP_NORM: "post_attention_layernorm.weight", hm.FC2: "mlp.down_proj.weight"}
        return get(p + single[name])


class RemappedSource:
    """Depth up-scaling: output layer j is source layer `layer_map[j]`; the rest carries over."""

    def __init__(self, source: ModelSource, layer_map: list[int]):
        self.source, self.layer_map = source, list(layer_map)
        self.shape = depth.upscaled_shape(source.shape, self.layer_map)
        self.dtype = source.dtype

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        return self.source.global_tensor(name, rows)

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        return self.source.layer_tensor(self.layer_map[layer], name)


class PrunedSource:
    """Width/depth pruning: each tensor is the source tensor with the plan's indices kept."""

    def __init__(self, source: ModelSource, plan: width.KeepPlan):
        self.source, self.plan = source, plan
        self.shape, self.dtype = plan.shape, source.dtype

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        hidden = self.plan.hidden
        if name == hm.FINAL_NORM:
            return width.prune_norm(self.source.global_tensor(name, rows), hidden)
        embedding = width.prune_embedding(self.source.global_tensor(name, rows), hidden)
        if name == hm.EMBEDDING and self.plan.average_embeddings:
            output = width.prune_embedding(self.source.global_tensor(hm.OUTPUT, rows), hidden)
            return width.tie_by_averaging(embedding, output)
        return embedding

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        src = self.plan.layers[layer]
        tensor, plan, shape = self.source.layer_tensor(src, name), self.plan, self.source.shape
        if name in (hm.ATTN_NORM, hm.MLP_NORM):
            return width.prune_norm(tensor, plan.hidden)
        if name == hm.QKV:
            return width.prune_qkv(tensor, shape, plan.hidden, plan.heads_of(src))
        if name == hm.PROJ:
            return width.prune_proj(tensor, shape, plan.hidden, plan.heads_of(src))
        if name == hm.FC1:
            return width.prune_fc1(tensor, plan.hidden, plan.ffn_of(src))
        return width.prune_fc2(tensor, plan.hidden, plan.ffn_of(src))


class LastTensorCache:
    """Remembers the most recent tensor, so a fused tensor read for its first half
    (gate, q) is not read again for the next (up, k, v). With `log_layers`, logs
    progress as each layer is first touched (for writers that go layer by layer)."""

    def __init__(self, source: ModelSource, log_layers: bool = False):
        self.source, self.log_layers = source, log_layers
        self.shape, self.dtype = source.shape, source.dtype
        self._key, self._value = None, None
        self._layers_seen: set[int] = set()

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        return self._cached(("global", name, rows), lambda: self.source.global_tensor(name, rows))

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        if self.log_layers and layer not in self._layers_seen:
            self._layers_seen.add(layer)
            log.info("layer %d/%d", len(self._layers_seen), self.shape.num_layers)
        return self._cached((layer, name), lambda: self.source.layer_tensor(layer, name))

    def _cached(self, key, read: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key != self._key:
            self._key, self._value = None, None  # drop the old tensor before reading the next
            self._value, self._key = read(), key
        return self._value


_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")


def hf_names_in_write_order(shape: ModelShape) -> list[tuple[str, tuple[int, ...]]]:
    """HF tensors ordered so that tensors of one fused megatron tensor are adjacent."""
    return list(hm.hf_tensor_shapes(shape).items())


def hf_tensor_getter(source: ModelSource) -> Callable[..., torch.Tensor]:
    """(name in HF's naming, optional row block) -> tensor, computed from a megatron-named source."""
    def get(name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        if name in hm.GLOBAL_HF_TO_MEGATRON:
            return source.global_tensor(hm.GLOBAL_HF_TO_MEGATRON[name], rows)
        if rows is not None:
            raise ValueError(f"row blocks are for vocabulary-sized tensors, not {name}")
        m = _HF_LAYER.match(name)
        if not m:
            raise KeyError(f"not a Llama tensor name: {name}")
        layer, rel = int(m.group(1)), m.group(2)
        if rel.startswith("self_attn.") and rel != "self_attn.o_proj.weight":
            q, k, v = hm.split_qkv(source.layer_tensor(layer, hm.QKV), source.shape)
            return {"self_attn.q_proj.weight": q, "self_attn.k_proj.weight": k, "self_attn.v_proj.weight": v}[rel]
        if rel in ("mlp.gate_proj.weight", "mlp.up_proj.weight"):
            gate, up = hm.split_fc1(source.layer_tensor(layer, hm.FC1))
            return gate if rel == "mlp.gate_proj.weight" else up
        single = {"input_layernorm.weight": hm.ATTN_NORM, "self_attn.o_proj.weight": hm.PROJ,
                  "post_attention_layernorm.weight": hm.MLP_NORM, "mlp.down_proj.weight": hm.FC2}
        return source.layer_tensor(layer, single[rel])
    return get
