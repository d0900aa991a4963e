"""Read tensors of a megatron-core dist checkpoint one slice at a time, without megatron.

    check_shapes(directory, shape)                       # every tensor where the shape says
    src = DistCheckpointSource(directory, shape)         # a ModelSource (surgery/sources.py)
    src.layer_tensor(3, "self_attention.linear_qkv.weight")

The format is torch.distributed.checkpoint's, read through checkpointing/safe_load
(no code from the checkpoint runs); reading it needs only torch, so
export and surgery skip megatron-core's import (about 250 MB of RSS). Layer
tensors are stored stacked, [num_layers, ...]; a read asks for one layer's
region and torch reads just the overlapping byte ranges.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch.distributed._shard._utils import narrow_tensor_by_index
from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
from torch.distributed.checkpoint.planner import LoadPlan
from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.checkpointing.safe_load import SafeFileSystemReader, read_dcp_metadata
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import hf_mapping as hm

LAYER_PREFIX = "decoder.layers."


def stored_tensors(directory: str | Path) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """Checkpoint key -> (global shape, dtype), from the dist checkpoint's metadata only."""
    metadata = read_dcp_metadata(directory)
    return {k: (tuple(v.size), v.properties.dtype) for k, v in metadata.state_dict_metadata.items()
            if hasattr(v, "size")}


def check_shapes(directory: str | Path, shape: ModelShape) -> torch.dtype:
    """Every tensor `shape` implies is stored with that global shape; returns the stored dtype."""
    stored = stored_tensors(directory)
    expected = dict(hm.global_tensor_shapes(shape))
    expected.update({LAYER_PREFIX + k: (shape.num_layers, *v) for k, v in hm.layer_tensor_shapes(shape).items()})
    for key, want in expected.items():
        if key not in stored:
            raise CheckpointError(f"{directory}: tensor {key} is missing (model shape {shape.to_dict()})")
        if stored[key][0] != tuple(want):
            raise CheckpointError(f"{directory}: {key} is stored as {list(stored[key][0])}, "
                                  f"but kanana.json's model shape implies {list(want)}")
    return stored[hm.EMBEDDING][1]


class _SliceLoadPlanner(DefaultLoadPlanner):
    """Reads one region of one stored tensor into `dest` (torch's resharding reads
    just the overlapping byte ranges), without building torch ShardedTensors,
    which in a world of one cannot describe a partial request."""

    def __init__(self, fqn: str, offsets: tuple[int, ...], dest: torch.Tensor):
        super().__init__()
        self.fqn, self.offsets, self.dest = fqn, offsets, dest

    def create_local_plan(self) -> LoadPlan:
        chunk = ChunkStorageMetadata(offsets=torch.Size(self.offsets), sizes=self.dest.shape)
        return LoadPlan(create_read_items_for_chunk_list(self.fqn, self.metadata.state_dict_metadata[self.fqn],
                                                         [chunk]))

    def resolve_tensor(self, read_item) -> torch.Tensor:
        return narrow_tensor_by_index(self.dest, read_item.dest_offsets, read_item.lengths)

    def commit_tensor(self, read_item, tensor: torch.Tensor) -> None:
        pass  # resolve_tensor handed out a view of dest: the data is already there


def read_slice(directory: str | Path, fqn: str, offsets: tuple[int, ...], shape: tuple[int, ...],
               dtype: torch.dtype) -> torch.Tensor:
    """The region [offsets, offsets + shape) of stored tensor `fqn`."""
    dest = torch.empty(shape, dtype=dtype)
    reader = SafeFileSystemReader(directory)
    metadata = reader.read_metadata()
    planner = _SliceLoadPlanner(fqn, offsets, dest)
    planner.set_up_planner({}, metadata, True)
    reader.set_up_storage_reader(metadata, True)
    plan = reader.prepare_local_plan(planner.create_local_plan())
    (plan,) = reader.prepare_global_plan([plan])
    try:
        reader.read_data(plan, planner).wait()
    except (FileNotFoundError, EOFError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"{directory}: cannot read {fqn} (missing or truncated shard?): "
                              f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None
    return dest


class DistCheckpointSource:
    """A ModelSource over a dist checkpoint: each request reads just that tensor's slice."""

    def __init__(self, directory: str | Path, shape: ModelShape):
        self.directory, self.shape = Path(directory), shape
        self.dtype = check_shapes(self.directory, shape)

    def global_tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        shp = hm.global_tensor_shapes(self.shape)[name]
        if rows is None:
            return read_slice(self.directory, name, (0,) * len(shp), shp, self.dtype)
        return read_slice(self.directory, name, (rows[0], 0), (rows[1] - rows[0], shp[1]), self.dtype)

    def layer_tensor(self, layer: int, name: str) -> torch.Tensor:
        shp = hm.layer_tensor_shapes(self.shape)[name]
        out = read_slice(self.directory, LAYER_PREFIX + name, (layer,) + (0,) * len(shp), (1, *shp), self.dtype)
        return out[0]
