"""Hugging Face checkpoint directories: lazy, validated reading and streaming writing.

    reader = HFReader(path)                 # checks config, shards and every shape up front
    t = reader.tensor("model.norm.weight")  # one tensor, read when asked
    write_hf_dir(out, shape, config, tensors_in_order, dtype)

A directory is config.json + model.safetensors, or shards listed in
model.safetensors.index.json. Writing never holds more than one tensor: each
shard's safetensors header is computed from the known shapes first, then the
tensors are streamed into it. The directory is built as OUT.partial/ and
renamed into place at the end, so an interrupted run leaves nothing that looks
like a checkpoint.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import torch

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.log import get_logger
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.surgery import hf_mapping

log = get_logger(__name__)

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "generation_config.json")
# Tensors some exporters add that carry no weights of their own.
_IGNORED_SUFFIXES = (".rotary_emb.inv_freq",)
_DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
_TORCH_DTYPES = {v: k for k, v in _DTYPES.items()}
# Vocabulary-sized tensors move in row blocks of at most this size (the embedding of
# a 128k vocabulary is 0.5-1 GB), so no direction holds a whole one.
BLOCK_BYTES = 64 * 1024 ** 2


def is_hf_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).exists()


def read_header(path: Path) -> dict[str, dict]:
    """A safetensors file's header: tensor name -> {"dtype", "shape", "data_offsets"}."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise CheckpointError(f"{path} is truncated: no safetensors header")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 * 1024 ** 2:
            raise CheckpointError(f"{path}: implausible safetensors header length {length}")
        try:
            header = json.loads(f.read(length))
        except ValueError as e:
            raise CheckpointError(f"{path}: unreadable safetensors header ({e})") from None
    header.pop("__metadata__", None)
    for name, entry in header.items():
        entry["start"] = 8 + length + entry["data_offsets"][0]
    return header


class HFReader:
    """A validated, lazily read HF Llama checkpoint.

    Tensors are read with plain file reads into their own buffer rather than
    through safetensors' memory map: mapped pages stay in this process's RSS,
    and a mapped tensor would be copied again by torch's checkpoint writer."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        if not (self.directory / CONFIG).exists():
            raise CheckpointError(f"{self.directory} has no {CONFIG}: not a Hugging Face checkpoint")
        self.config = json.loads((self.directory / CONFIG).read_text())
        self.shape: ModelShape = hf_mapping.shape_from_hf_config(self.config)
        self._entries = self._read_headers()  # name -> (file, header entry)
        self.dtype = self._check_shapes()

    def _read_headers(self) -> dict[str, tuple[str, dict]]:
        index = self.directory / INDEX
        if index.exists():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not weight_map:
                raise CheckpointError(f"{index} has no weight_map")
        elif (self.directory / SINGLE).exists():
            weight_map = {name: SINGLE for name in read_header(self.directory / SINGLE)}
        else:
            raise CheckpointError(f"{self.directory} has neither {SINGLE} nor {INDEX}")
        missing = sorted({f for f in weight_map.values() if not (self.directory / f).exists()})
        if missing:
            raise CheckpointError(f"{self.directory}: shard file(s) {missing} listed in {INDEX} are missing")
        entries = {}
        for filename in sorted(set(weight_map.values())):
            header = read_header(self.directory / filename)
            absent = sorted(n for n, f in weight_map.items() if f == filename and n not in header)
            if absent:
                raise CheckpointError(f"{self.directory}: {INDEX} places {absent[:3]} in {filename}, "
                                      "which does not hold them")
            entries.update({n: (filename, header[n]) for n, f in weight_map.items() if f == filename})
        return entries

    def _check_shapes(self) -> torch.dtype:
        expected = hf_mapping.hf_tensor_shapes(self.shape)
        missing = sorted(set(expected) - set(self._entries))
        if missing:
            raise CheckpointError(f"{self.directory}: tensors missing from the checkpoint: {missing[:5]}"
                                  f"{' ...' if len(missing) > 5 else ''}")
        allowed_extra = {hf_mapping.HF_OUTPUT} if self.shape.tie_embeddings else set()
        extra = sorted(n for n in set(self._entries) - set(expected)
                       if n not in allowed_extra and not n.endswith(_IGNORED_SUFFIXES))
        if extra:
            raise CheckpointError(f"{self.directory}: unexpected tensors for a bias-free Llama: {extra[:5]}")
        dtypes = set()
        for name, want in expected.items():
            entry = self._entries[name][1]
            if tuple(entry["shape"]) != want:
                raise CheckpointError(f"{self.directory}: {name} has shape {entry['shape']}, "
                                      f"but config.json implies {list(want)}")
            if entry["dtype"] not in _TORCH_DTYPES:
                raise CheckpointError(f"{self.directory}: {name} has unsupported dtype {entry['dtype']}")
            dtypes.add(entry["dtype"])
        if len(dtypes) != 1:
            log.warning("%s mixes dtypes %s; tensors keep their own", self.directory, sorted(dtypes))
        return _TORCH_DTYPES[sorted(dtypes)[0]]

    def tensor(self, name: str, rows: Optional[tuple[int, int]] = None) -> torch.Tensor:
        """The tensor, or rows [start, stop) of it (rows are contiguous in safetensors)."""
        filename, entry = self._entries[name]
        shape = list(entry["shape"])
        begin, end = entry["data_offsets"]
        if rows is not None:
            row_bytes = (end - begin) // shape[0]
            begin, end, shape[0] = begin + rows[0] * row_bytes, begin + rows[1] * row_bytes, rows[1] - rows[0]
        buffer = bytearray(end - begin)
        with open(self.directory / filename, "rb") as f:
            f.seek(entry["start"] + begin - entry["data_offsets"][0])
            if f.readinto(buffer) != len(buffer):
                raise CheckpointError(f"{self.directory / filename} is truncated at tensor {name}")
        dtype = _TORCH_DTYPES[entry["dtype"]]
        if not buffer:
            return torch.empty(shape, dtype=dtype)
        return torch.frombuffer(buffer, dtype=dtype).reshape(shape)

    def tokenizer_files(self) -> list[Path]:
        return [self.directory / f for f in TOKENIZER_FILES if (self.directory / f).exists()]


# ---------------------------------------------------------------- writing

def plan_shards(names_shapes: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype,
                max_shard_bytes: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """Split tensors (in order) into shards of at most `max_shard_bytes` (a bigger tensor gets its own)."""
    shards, current, size = [], [], 0
    itemsize = torch.empty((), dtype=dtype).element_size()
    for name, shp in names_shapes:
        nbytes = itemsize * int(torch.Size(shp).numel())
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shp))
        size += nbytes
    if current:
        shards.append(current)
    return shards


def _header(entries: list[tuple[str, tuple[int, ...]]], dtype: torch.dtype) -> bytes:
    itemsize = torch.empty((), dtype=dtype).element_size()
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shp in entries:
        nbytes = itemsize * int(torch.Size(shp).numel())
        header[name] = {"dtype": _DTYPES[dtype], "shape": list(shp), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # safetensors pads the header to 8 bytes
    return struct.pack("<Q", len(raw)) + raw


def row_blocks(shape: tuple[int, ...], itemsize: int, max_bytes: Optional[int] = None) -> list[Optional[tuple[int, int]]]:
    """Row ranges covering a vocabulary-sized tensor in blocks of at most `max_bytes`
    (default BLOCK_BYTES); [None] (the whole tensor) for anything smaller."""
    max_bytes = max_bytes or BLOCK_BYTES
    total = itemsize * int(torch.Size(shape).numel())
    if len(shape) != 2 or total <= max_bytes:
        return [None]
    step = max(1, max_bytes // (itemsize * shape[1]))
    return [(a, min(a + step, shape[0])) for a in range(0, shape[0], step)]


def _write_shard(path: Path, entries, dtype, get: Callable[..., torch.Tensor]) -> None:
    itemsize = torch.empty((), dtype=dtype).element_size()
    with open(path, "wb") as f:
        f.write(_header(entries, dtype))
        for name, shp in entries:
            for rows in row_blocks(shp, itemsize):
                want = shp if rows is None else (rows[1] - rows[0], *shp[1:])
                t = (get(name) if rows is None else get(name, rows)).to(dtype).contiguous()
                if tuple(t.shape) != tuple(want):
                    raise CheckpointError(f"{name}: produced shape {list(t.shape)}, planned {list(want)}")
                f.write(memoryview(t.reshape(-1).view(torch.uint8).numpy()))
                del t
        f.flush()
        os.fsync(f.fileno())


def write_hf_dir(output: Path, names_shapes: list[tuple[str, tuple[int, ...]]], config: Mapping,
                 get: Callable[..., torch.Tensor], dtype: torch.dtype, tokenizer_files: Iterable[Path] = (),
                 max_shard_bytes: int = 2 * 1024 ** 3, on_tensor: Callable[[str], None] | None = None,
                 meta: Optional[Mapping] = None) -> Path:
    """Stream tensors into OUTPUT.partial/, then rename it to OUTPUT. Tensors are asked
    for one at a time in `names_shapes` order, as `get(name)`, or `get(name, (start, stop))`
    in row blocks for vocabulary-sized ones. With `meta` (the source checkpoint's kanana.json)
    the export also gets its chat template, generation config and model card (hf_export.py)."""
    output = Path(output)
    partial = output.with_name(output.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # a killed earlier attempt
    partial.mkdir(parents=True)
    try:
        _write_into(partial, names_shapes, config, get, dtype, tokenizer_files, max_shard_bytes, on_tensor, meta)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # a failed export leaves nothing behind
        raise
    os.replace(partial, output)
    return output


def _write_into(partial: Path, names_shapes, config, get, dtype, tokenizer_files, max_shard_bytes, on_tensor,
                meta) -> None:
    shards = plan_shards(names_shapes, dtype, max_shard_bytes)
    files = [SINGLE] if len(shards) == 1 else [
        f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map, total = {}, 0
    for filename, entries in zip(files, shards):
        _write_shard(partial / filename, entries, dtype, get if on_tensor is None else _tap(get, on_tensor))
        for name, shp in entries:
            weight_map[name] = filename
            total += torch.empty((), dtype=dtype).element_size() * int(torch.Size(shp).numel())
    if len(files) > 1:
        (partial / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map},
                                                indent=2))
    for src in tokenizer_files:
        shutil.copy2(src, partial / Path(src).name)
    if meta is not None:
        from megatron_kanana.checkpointing.hf_export import complete_export

        config = complete_export(partial, config, meta)
    (partial / CONFIG).write_text(json.dumps(dict(config), indent=2, sort_keys=True))


def _tap(get, on_tensor):
    def wrapped(name, *rows):
        on_tensor(name)
        return get(name, *rows)
    return wrapped
