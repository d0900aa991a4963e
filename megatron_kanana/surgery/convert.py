"""`kanana convert`: Hugging Face Llama <-> megatron-core dist checkpoint.

    kanana convert --from hf --to mcore --input HF_DIR --output CKPT_ROOT [--tp 2 --pp 2]
    kanana convert --from mcore --to hf --input CKPT_ROOT_OR_ITER_DIR --output HF_DIR

The megatron checkpoint is layout-free: it is written once, at TP=1/PP=1, and
dist_checkpointing reshards it on load to whatever TP/PP/VPP the trainer runs.
`--tp/--pp/--vpp` only check that the model can be split that way.
Conversion streams tensor by tensor (peak memory about one layer's tensor,
see benchmarks/README.md). Output appears only when complete:
CKPT_ROOT/iter_0000000 + latest, or HF_DIR (built as HF_DIR.partial).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Optional

import torch

from megatron_kanana.checkpointing import hf_dir, layout
from megatron_kanana.config.section import ConfigError
from megatron_kanana.log import get_logger
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig, check_layout
from megatron_kanana.surgery import hf_mapping, memory, sources

log = get_logger(__name__)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
TOKENIZER_DIR = "tokenizer"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="src", choices=["hf", "mcore"], required=True, help="input format")
    parser.add_argument("--to", dest="dst", choices=["hf", "mcore"], required=True, help="output format")
    parser.add_argument("--input", required=True, type=Path,
                        help="HF directory, or a megatron checkpoint (run root with `latest`, or an iter_* dir)")
    parser.add_argument("--output", required=True, type=Path,
                        help="HF directory, or a megatron run root (gets iter_0000000/ and latest)")
    add_common_arguments(parser)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tp", type=int, default=1, help="check the model splits over this tensor-parallel size "
                        "(the checkpoint itself is layout-free and loads at any TP/PP)")
    parser.add_argument("--pp", type=int, default=1, help="check the model splits over this many pipeline stages")
    parser.add_argument("--vpp", type=int, default=None, help="check virtual pipeline stages per pipeline stage")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="cast tensors (default: keep)")
    parser.add_argument("--max-shard-size", type=float, default=2.0, help="HF output: GiB per safetensors shard")


# ---------------------------------------------------------------- opening inputs

class Opened:
    """An input checkpoint: a ModelSource plus what travels with it."""

    def __init__(self, source, tokenizer_files: list[Path], hf_config: Optional[dict], meta: dict):
        self.source, self.tokenizer_files, self.hf_config, self.meta = source, tokenizer_files, hf_config, meta


def open_input(path: Path, fmt: str) -> Opened:
    """Validate and open an input; every problem is raised here, before any output exists."""
    if fmt == "hf":
        reader = hf_dir.HFReader(path)
        return Opened(sources.HFSource(reader), reader.tokenizer_files(), reader.config, {})
    from megatron_kanana.mcore.dist_ckpt_reader import DistCheckpointSource

    directory = layout.resolve(path)
    meta = layout.read_meta(directory)
    layout.check_model_kind(meta, directory, ("lm",), "the Llama-format converter")
    if "model" not in meta.get("contents", ["model"]) or not isinstance(meta.get("model"), dict):
        raise layout.CheckpointError(f"{directory}/{layout.META} has no model shape")
    shape = ModelShape.from_dict(meta["model"])
    return Opened(DistCheckpointSource(directory, shape), _tokenizer_files(directory, meta.get("tokenizer")),
                  meta.get("hf_config"), meta)


def _tokenizer_files(directory: Path, tok: Optional[str]) -> list[Path]:
    """A converted checkpoint names a tokenizer directory beside it; a training run's names the
    tokenizer it trained with (a tokenizer.json / SentencePiece file or directory, maybe elsewhere)."""
    if not tok:
        return []
    path = directory / tok  # an absolute `tok` stays absolute
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.is_file())
    if path.is_file():
        return [path]
    log.warning("the checkpoint's tokenizer %s is not there; the output carries no tokenizer", path)
    return []


def check_parallel(shape: ModelShape, tp: int, pp: int, vpp: Optional[int]) -> None:
    parallel = ParallelConfig(tensor_model_parallel_size=tp, pipeline_model_parallel_size=pp,
                              virtual_pipeline_model_parallel_size=vpp)
    check_layout(parallel, shape, world_size=parallel.model_parallel_size, device="cuda")


def check_output_free(output: Path, fmt: str) -> None:
    """Never overwrite: an existing output must be absent, or hold only leftovers of a killed run."""
    if fmt == "hf":
        if output.exists() and any(output.iterdir()):
            raise FileExistsError(f"{output} exists and is not empty; choose a new --output")
        return
    if output.exists():
        leftovers = [p for p in output.iterdir() if not p.name.endswith(layout.PARTIAL)]
        if leftovers:
            raise FileExistsError(f"{output} already holds {sorted(p.name for p in leftovers)[:3]}; "
                                  "choose a new --output")


# ---------------------------------------------------------------- writing outputs

def write_output(opened: Opened, source, output: Path, fmt: str, dtype: Optional[torch.dtype],
                 max_shard_gib: float, extra_meta: Optional[dict] = None) -> Path:
    """Stream `source` into `output` in format `fmt`; returns the published directory."""
    dtype = dtype or source.dtype
    cached = sources.LastTensorCache(source, log_layers=fmt == "hf")
    if fmt == "hf":
        config = hf_mapping.hf_config_from_shape(source.shape, dtype, base=opened.hf_config)
        if extra_meta:
            config["kanana"] = extra_meta  # e.g. the layer map; transformers ignores unknown keys
        return hf_dir.write_hf_dir(output, sources.hf_names_in_write_order(source.shape), config,
                                   sources.hf_tensor_getter(cached), dtype, opened.tokenizer_files,
                                   max_shard_bytes=int(max_shard_gib * 1024 ** 3),
                                   meta={**opened.meta, **(extra_meta or {})})
    from megatron_kanana.mcore.dist_ckpt_writer import save_source

    output.mkdir(parents=True, exist_ok=True)
    partial = layout.partial_dir(output, 0)
    if partial.exists():
        shutil.rmtree(partial)  # a killed earlier attempt
    save_source(cached, partial, dtype)
    if opened.tokenizer_files:
        (partial / TOKENIZER_DIR).mkdir()
        for f in opened.tokenizer_files:
            shutil.copy2(f, partial / TOKENIZER_DIR / f.name)
    meta = {"contents": ["model"], "model": source.shape.to_dict(), "dtype": str(dtype).removeprefix("torch."),
            "tokenizer": TOKENIZER_DIR if opened.tokenizer_files else None, "hf_config": opened.hf_config,
            "iteration": 0, **(extra_meta or {})}
    layout.write_meta(partial, meta)
    return layout.publish(output, 0)


def run(args: argparse.Namespace) -> int:
    try:
        return _convert(args)
    except (ConfigError, layout.CheckpointError, FileExistsError) as e:
        print(f"kanana convert: error: {e}", file=sys.stderr)
        return 2


def _convert(args: argparse.Namespace) -> int:
    memory.return_freed_memory_eagerly()
    if args.src == args.dst:
        raise ConfigError(f"--from and --to are both {args.src!r}: nothing to convert")
    opened = open_input(args.input, args.src)
    check_parallel(opened.source.shape, args.tp, args.pp, args.vpp)
    check_output_free(args.output, args.dst)
    shape = opened.source.shape
    log.info("converting %s (%s, %d layers, %s) -> %s (%s)", args.input, args.src, shape.num_layers,
             str(opened.source.dtype).removeprefix("torch."), args.output, args.dst)
    out = write_output(opened, opened.source, args.output, args.dst, DTYPES.get(args.dtype), args.max_shard_size)
    print(f"wrote {out}")
    return 0
