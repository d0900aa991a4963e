"""Write a megatron-core dist checkpoint tensor by tensor, without building a model.

    save_source(source, directory)            # any ModelSource -> dist checkpoint

(Reading: `dist_ckpt_reader.py`.)

The checkpoint holds exactly what `GPTModel.sharded_state_dict()` at TP=1/PP=1
produces (the same keys, layer-stacked global shapes, the SwiGLU fc1 split into
its gate and up chunks, and the `_extra_state` objects), so the trainer loads
it strictly at any TP/PP/VPP: dist_checkpointing reshards on load.

Streaming: every tensor is declared with a meta tensor of the right shape; a
planner materialises it from the source only when torch.distributed.checkpoint
writes that item (its serial writer resolves one item at a time), so the peak
memory is about one tensor. The alternative, building a GPTModel and saving
it, holds the whole model.
"""
from __future__ import annotations

import datetime
import socket
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.mapping import ShardedObject, ShardedTensor
from megatron.core.dist_checkpointing.strategies.torch import (
    MCoreSavePlanner, TorchDistSaveShardedStrategy, _replace_state_dict_keys_with_sharded_keys,
    mcore_to_pyt_state_dict)

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.log import get_logger
from megatron_kanana.mcore.dist_ckpt_reader import LAYER_PREFIX
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import hf_mapping as hm

log = get_logger(__name__)
# Modules whose (empty, for the local spec) `_extra_state` GPTModel checkpoints per layer.
EXTRA_STATE_MODULES = ("self_attention.linear_proj", "self_attention.linear_qkv", "mlp.linear_fc1", "mlp.linear_fc2")

Loader = Callable[[], torch.Tensor]


def ensure_process_group() -> None:
    """dist_checkpointing needs torch.distributed; a lone tool process becomes a world of one."""
    if dist.is_initialized():
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=600))


def _meta(shape, dtype) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


def _layer_entries(shape: ModelShape, layer: int, dtype, source, cast) -> tuple[list, dict]:
    """ShardedTensors/Objects of one layer, as GPTModel at TP=1/PP=1 declares them."""
    n, offsets = shape.num_layers, (0, layer, shape.num_layers)
    entries, loaders = [], {}
    for name, shp in hm.layer_tensor_shapes(shape).items():
        key = LAYER_PREFIX + name
        if name == hm.FC1:  # megatron's swiglu factory stores gate and up as two chunks of one key
            half = (shp[0] // 2, shp[1])
            for chunk in (0, 1):
                entries.append(ShardedTensor.from_rank_offsets(
                    key, _meta(half, dtype), offsets, (1, chunk, 2), replica_id=0, prepend_axis_num=1))
                loaders[(key, (layer, chunk * half[0], 0))] = (
                    lambda c=chunk, name=name: cast(source.layer_tensor(layer, name).chunk(2, dim=0)[c]))
        else:
            entries.append(ShardedTensor.from_rank_offsets(key, _meta(shp, dtype), offsets,
                                                           replica_id=0, prepend_axis_num=1))
            loaders[(key, (layer,) + (0,) * len(shp))] = lambda name=name: cast(source.layer_tensor(layer, name))
    for module in EXTRA_STATE_MODULES:
        entries.append(ShardedObject(f"{LAYER_PREFIX}{module}._extra_state", None, (n,), (layer,), replica_id=0))
    return entries, loaders


def row_chunks(shp: tuple[int, ...], itemsize: int, max_bytes: int = 64 * 1024 ** 2) -> int:
    """How many equal row chunks a vocabulary-sized tensor is stored in: the fewest of at
    most `max_bytes` each, and at least 2 so small test models take the same path. The
    chunking is invisible to readers: dist_checkpointing reads any overlap, as it does
    for the vocab-parallel chunks TP>1 saves."""
    if len(shp) != 2:
        return 1
    need = max(2, -(-itemsize * shp[0] * shp[1] // max_bytes))
    for k in range(need, min(shp[0], 4096) + 1):
        if shp[0] % k == 0:
            return k
    return 1  # an awkward vocabulary size: one chunk


def sharded_state_dict_for(shape: ModelShape, source, dtype: torch.dtype) -> tuple[dict, dict]:
    """A sharded state dict of meta tensors for `shape`, and the loader of every chunk
    keyed by (checkpoint key, global offset)."""
    cast = lambda t: t.to(dtype).contiguous()  # noqa: E731
    state, loaders = {}, {}
    itemsize = torch.empty((), dtype=dtype).element_size()
    for name, shp in hm.global_tensor_shapes(shape).items():
        num_chunks = row_chunks(shp, itemsize)
        rows = shp[0] // num_chunks
        for k in range(num_chunks):
            axis = [(0, k, num_chunks)] if num_chunks > 1 else []
            chunk_shape = (rows, *shp[1:])
            state[f"{name}.{k}"] = ShardedTensor.from_rank_offsets(name, _meta(chunk_shape, dtype), *axis,
                                                                   replica_id=0)
            span = (k * rows, (k + 1) * rows) if num_chunks > 1 else None
            loaders[(name, (k * rows,) + (0,) * (len(shp) - 1))] = (
                lambda name=name, span=span: cast(source.global_tensor(name, span)))
    for layer in range(shape.num_layers):
        entries, layer_loaders = _layer_entries(shape, layer, dtype, source, cast)
        state.update({f"layer{layer}.{i}": e for i, e in enumerate(entries)})
        loaders.update(layer_loaders)
    return state, loaders


class _LazyPlanner(MCoreSavePlanner):
    """Materialises a meta tensor from its loader when the writer asks for it."""

    def __init__(self, loaders: dict, num_layers: int, **kwargs):
        super().__init__(**kwargs)
        self._loaders = loaders
        # torch writes the biggest items first, across layers, so progress is
        # reported in layer-sized steps of tensors written rather than per layer
        self._done, self._report_every = 0, max(1, len(loaders) // max(1, num_layers))

    def lookup_object(self, index):
        obj = super().lookup_object(index)
        if not (isinstance(obj, torch.Tensor) and obj.is_meta):
            return obj
        tensor = self._loaders[(index.fqn, tuple(index.offset))]()
        if tensor.numel() != obj.numel() or tensor.dtype != obj.dtype:
            raise CheckpointError(f"{index.fqn} at {list(index.offset)}: source gave {list(tensor.shape)} "
                                  f"{tensor.dtype}, expected {list(obj.shape)} {obj.dtype}")
        self._done += 1
        if self._done % self._report_every == 0 or self._done == len(self._loaders):
            log.info("wrote %d/%d tensors", self._done, len(self._loaders))
        return tensor.reshape(obj.shape)


class _LazySaveStrategy(TorchDistSaveShardedStrategy):
    """megatron's torch_dist format, written synchronously by torch's serial writer."""

    def __init__(self, loaders: dict, num_layers: int):
        super().__init__("torch_dist", 1, thread_count=1)
        self._loaders, self._num_layers = loaders, num_layers

    def save(self, sharded_state_dict, checkpoint_dir: Path) -> None:
        sharded_state_dict, _, _ = _replace_state_dict_keys_with_sharded_keys(sharded_state_dict, True)
        pyt_state_dict = mcore_to_pyt_state_dict(sharded_state_dict, False)
        writer = dcp.FileSystemWriter(str(checkpoint_dir), thread_count=1, single_file_per_rank=True)
        planner = _LazyPlanner(self._loaders, self._num_layers, dedup_replicated_tensors=False,
                               flatten_state_dict=False)
        dcp.save(pyt_state_dict, storage_writer=writer, planner=planner)


def save_source(source, directory: str | Path, dtype: Optional[torch.dtype] = None) -> None:
    """Write every tensor of `source` (a ModelSource) as a megatron dist checkpoint."""
    ensure_process_group()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state, loaders = sharded_state_dict_for(source.shape, source, dtype or source.dtype)
    dist_checkpointing.save(state, str(directory), sharded_strategy=_LazySaveStrategy(loaders, source.shape.num_layers))
