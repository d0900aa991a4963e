"""`kanana upscale-depth`: depth up-scaling (SOLAR-style layer stacking) of a checkpoint.

    kanana upscale-depth --input CKPT --output CKPT2 --layers 0-23,8-31          # 32 -> 48 (SOLAR)
    kanana upscale-depth --input CKPT --output CKPT2 --layers essence-32-to-40   # 0-19,12-31
    kanana upscale-depth --input HF_DIR --output HF_DIR2 --layers 0-19,12-31

--input is a megatron checkpoint (run root or iter_* dir) or an HF directory;
the output has the same format unless --to says otherwise. Output layer j is
an exact copy of source layer map[j]; embeddings, final norm and output layer
carry over; optimizer state is dropped (the output is model-only). The layer
map is printed and saved in kanana.json (megatron output). Streams tensor by
tensor like `kanana convert`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_kanana.checkpointing import hf_dir, layout
from megatron_kanana.config.section import ConfigError
from megatron_kanana.log import get_logger
from megatron_kanana.surgery import convert, depth, memory, sources

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="megatron checkpoint or HF directory")
    parser.add_argument("--output", required=True, type=Path, help="new megatron run root or HF directory")
    parser.add_argument("--layers", required=True,
                        help="source layer ranges to stack in order, e.g. 0-23,8-31; or a named example: "
                             + ", ".join(f"{k} ({v})" for k, v in depth.EXAMPLES.items()))
    parser.add_argument("--to", dest="dst", choices=["hf", "mcore"], default=None,
                        help="output format (default: the input's)")
    convert.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return _upscale(args)
    except (ConfigError, layout.CheckpointError, FileExistsError) as e:
        print(f"kanana upscale-depth: error: {e}", file=sys.stderr)
        return 2


def _upscale(args: argparse.Namespace) -> int:
    memory.return_freed_memory_eagerly()
    src_fmt = "hf" if hf_dir.is_hf_dir(args.input) else "mcore"
    dst_fmt = args.dst or src_fmt
    opened = convert.open_input(args.input, src_fmt)
    spec = depth.EXAMPLES.get(args.layers, args.layers)
    layer_map = depth.parse_layer_spec(spec, opened.source.shape.num_layers)
    upscaled = sources.RemappedSource(opened.source, layer_map)
    convert.check_parallel(upscaled.shape, args.tp, args.pp, args.vpp)
    convert.check_output_free(args.output, dst_fmt)
    print(f"layer map ({opened.source.shape.num_layers} -> {len(layer_map)} layers): {depth.describe(layer_map)}")
    extra = {"layer_map": layer_map, "layer_spec": spec, "upscaled_from": str(args.input)}
    out = convert.write_output(opened, upscaled, args.output, dst_fmt, convert.DTYPES.get(args.dtype),
                               args.max_shard_size, extra_meta=extra)
    print(f"wrote {out}")
    return 0
