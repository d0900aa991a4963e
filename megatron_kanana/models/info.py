"""`kanana model-info PRESET [--json]`: a preset's shape and parameter counts."""
from __future__ import annotations

import argparse
import json

from megatron_kanana.config.section import ConfigError
from megatron_kanana.models.presets import PRESETS, get_preset


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("preset", choices=sorted(PRESETS), help="model preset name")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--seq-length", type=int, default=8192, help="sequence length for FLOPs per token")


def describe(name: str, seq_length: int = 8192) -> dict:
    if seq_length < 1:
        raise ConfigError(f"--seq-length must be >= 1, got {seq_length}")
    shape = get_preset(name)
    return {
        "preset": name,
        "parameters": shape.parameters,
        "non_embedding_parameters": shape.non_embedding_parameters,
        "embedding_parameters": shape.embedding_parameters,
        "flops_per_token": shape.flops_per_token(seq_length),
        "seq_length_for_flops": seq_length,
        "shape": shape.to_dict(),
    }


def run(args: argparse.Namespace) -> int:
    info = describe(args.preset, args.seq_length)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['preset']}: {info['parameters']:,} parameters "
          f"({info['non_embedding_parameters']:,} without the embedding)")
    for key, value in info["shape"].items():
        print(f"  {key:<24} {value}")
    return 0
