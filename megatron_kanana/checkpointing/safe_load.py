"""Reading checkpoint metadata and state without running code from the checkpoint.

    metadata = read_dcp_metadata(directory)        # .metadata through the restricted unpickler
    reader = SafeFileSystemReader(directory)       # a torch DCP reader that does the same
    state = load_weights_only(path)                # .pt files: tensors and plain data only

torch.distributed.checkpoint stores `.metadata` as a pickle and reads it with
plain `pickle.load`; its default planner unpickles byte items with
`torch.load(weights_only=False)`. A checkpoint comes from someone else's disk,
so both are replaced: the metadata unpickler admits only the dataclasses the
format needs (listed below) and byte items are read weights-only. Anything else
is a `CheckpointError` naming the file. Needs torch only (no megatron), so the
export and surgery tools use it too.
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta

from megatron_kanana.checkpointing.layout import CheckpointError

METADATA_FILE = ".metadata"

# What torch DCP's writers put in `.metadata` (torch 2.4 - 2.13): the metadata dataclasses,
# the per-item storage info, sizes, dtypes and the enums they carry. Nothing callable.
_ALLOWED: dict[str, frozenset[str]] = {
    "torch.distributed.checkpoint.metadata": frozenset({
        "Metadata", "TensorStorageMetadata", "BytesStorageMetadata", "ChunkStorageMetadata",
        "TensorProperties", "MetadataIndex", "StorageMeta", "_MEM_FORMAT_ENCODING"}),
    "torch.distributed.checkpoint.filesystem": frozenset({"_StorageInfo"}),
    # megatron keeps each rank's save plan in the metadata (for its cached-plan saves)
    "torch.distributed.checkpoint.planner": frozenset({"LoadItemType", "WriteItemType", "SavePlan", "WriteItem",
                                                       "TensorWriteData"}),
    # maps a layout's name to the torch.layout object, nothing else
    "torch.serialization": frozenset({"_get_layout"}),
    "torch.distributed.checkpoint._extension": frozenset({"StreamTransformExtension"}),
    "torch": frozenset({"Size", "float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8",
                        "uint8", "bool", "strided", "contiguous_format", "channels_last", "preserve_format",
                        "channels_last_3d", "float8_e4m3fn", "float8_e5m2", "complex64", "complex128"}),
    "collections": frozenset({"OrderedDict", "defaultdict"}),
    "pathlib": frozenset({"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"}),  # storage_meta's id
    "builtins": frozenset({"set", "frozenset", "slice", "tuple", "list", "dict", "int", "float", "str", "bytes",
                           "bool", "complex"}),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the checkpoint metadata format")


def restricted_loads(data: bytes) -> Any:
    """Unpickle `data`, admitting only the classes of torch DCP's metadata."""
    return _RestrictedUnpickler(io.BytesIO(data)).load()


def read_dcp_metadata(directory: str | Path) -> Metadata:
    """The `.metadata` of a dist checkpoint, read by the restricted unpickler."""
    path = Path(directory) / METADATA_FILE
    if not path.is_file():
        raise CheckpointError(f"{directory} is not a dist checkpoint: {path.name} is missing")
    try:
        metadata = restricted_loads(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError, ImportError,
            IndexError, KeyError) as e:
        raise CheckpointError(f"{path}: not a valid checkpoint metadata file ({e})") from None
    if not isinstance(metadata, Metadata):
        raise CheckpointError(f"{path}: not a valid checkpoint metadata file (holds a {type(metadata).__name__})")
    return metadata


def load_weights_only(path: str | Path, **kwargs) -> Any:
    """torch.load of a `.pt` file, tensors and plain data only, whatever TORCH_FORCE_* says
    (an explicit weights_only=True is never overridden by the environment)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load (it holds more than tensors and plain data): "
                              f"{str(e).splitlines()[0]}") from None
    except (EOFError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable or truncated ({str(e).splitlines()[0]})") from None


class SafeFileSystemReader(FileSystemReader):
    """torch DCP's FileSystemReader, with `.metadata` through the restricted unpickler and
    byte items (pickled objects inside the shards) loaded weights-only."""

    def __init__(self, path: str | Path, **kwargs):
        super().__init__(str(path), **kwargs)
        self._directory = Path(path)
        self._cached_metadata: Metadata | None = None

    def read_metadata(self, *args, **kwargs) -> Metadata:
        # cached: megatron reads it again after the load (its CachedMetadataFileSystemReader did the same)
        if self._cached_metadata is None:
            metadata = read_dcp_metadata(self._directory)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            self._cached_metadata = metadata
        return self._cached_metadata

    def read_data(self, plan, planner):
        original = planner.load_bytes
        directory = self._directory

        def load_bytes(read_item, value: io.BytesIO) -> None:
            try:
                torch.load(value, weights_only=True)
            except Exception as e:  # whatever the bytes are, refusing them is the answer
                raise CheckpointError(f"{directory}: refused to load object {read_item.dest_index.fqn!r} "
                                      f"(it holds more than tensors and plain data): {str(e).splitlines()[0]}") from None
            value.seek(0)
            original(read_item, value)

        planner.load_bytes = load_bytes
        try:
            return super().read_data(plan, planner)
        finally:
            del planner.load_bytes
