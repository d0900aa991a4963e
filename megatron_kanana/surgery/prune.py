"""`kanana prune`: structured width/depth pruning of a checkpoint by importance scores.

    kanana prune --input runs/8b/checkpoints --scores scores/8b.safetensors --output ckpt/4.5b_pruned \\
                 --hidden 3072 --ffn 9216 --heads 32
    kanana prune --input ckpt/4.5b --scores scores/4.5b.safetensors --output ckpt/2.1b_pruned \\
                 --hidden 1792 --ffn 8064 --heads 24 --tie-embeddings --tp 2

--input is a megatron checkpoint (any training layout: dist checkpoints are
layout-free) or an HF directory; --scores comes from `kanana prune-score` on
that same model. Hidden channels are pruned everywhere (embeddings, every norm,
every projection), FFN neurons in gate/up rows and fc2 columns, query heads in
equal numbers per KV group (K and V kept); --drop-layers removes the layers of
lowest block importance; --tie-embeddings averages the input and output
embeddings into one; --no-gqa-alignment is Kanana's ablation (heads chosen
across KV groups). Every target is checked before anything is written; the
output (model-only, like `kanana convert`'s) records the new shape and the kept
indices in kanana.json ("pruning"), and streams tensor by tensor.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from megatron_kanana.checkpointing import hf_dir, layout
from megatron_kanana.config.section import ConfigError
from megatron_kanana.log import get_logger
from megatron_kanana.surgery import convert, memory, sources, width
from megatron_kanana.surgery.scores_file import check_matches, read_scores

log = get_logger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", required=True, type=Path, help="megatron checkpoint or HF directory to prune")
    parser.add_argument("--scores", required=True, type=Path, help="scores file from `kanana prune-score`")
    parser.add_argument("--output", required=True, type=Path, help="new megatron run root or HF directory")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size to keep (default: unchanged)")
    parser.add_argument("--ffn", type=int, default=None, help="FFN neurons to keep (default: unchanged)")
    parser.add_argument("--heads", type=int, default=None,
                        help="query heads to keep, a multiple of the KV groups (default: unchanged)")
    parser.add_argument("--drop-layers", type=int, default=0, help="remove this many least important layers")
    parser.add_argument("--tie-embeddings", action="store_true",
                        help="tie input and output embeddings by averaging them (Kanana 4.5B -> 2.1B)")
    parser.add_argument("--no-gqa-alignment", dest="gqa_alignment", action="store_false",
                        help="ablation: keep the top query heads over all KV groups instead of the same number "
                             "in each (Kanana TR Table 15)")
    parser.add_argument("--to", dest="dst", choices=["hf", "mcore"], default=None,
                        help="output format (default: the input's)")
    convert.add_common_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        return _prune(args)
    except (ConfigError, layout.CheckpointError, FileExistsError) as e:
        print(f"kanana prune: error: {e}", file=sys.stderr)
        return 2


def plan_for(shape, scores_path: Path, args: argparse.Namespace) -> width.KeepPlan:
    scores, header = read_scores(scores_path)
    check_matches(scores, shape, scores_path)
    targets = width.Targets(hidden=args.hidden, ffn=args.ffn, heads=args.heads, drop_layers=args.drop_layers,
                            tie_embeddings=args.tie_embeddings, gqa_alignment=args.gqa_alignment)
    return width.keep_plan(shape, scores, targets)


def _prune(args: argparse.Namespace) -> int:
    memory.return_freed_memory_eagerly()
    src_fmt = "hf" if hf_dir.is_hf_dir(args.input) else "mcore"
    dst_fmt = args.dst or src_fmt
    opened = convert.open_input(args.input, src_fmt)
    plan = plan_for(opened.source.shape, args.scores, args)
    convert.check_parallel(plan.shape, args.tp, args.pp, args.vpp)
    convert.check_output_free(args.output, dst_fmt)
    old, new = opened.source.shape, plan.shape
    print(f"pruning {old.parameters:,} -> {new.parameters:,} parameters: hidden {old.hidden_size}->{new.hidden_size}, "
          f"ffn {old.ffn_hidden_size}->{new.ffn_hidden_size}, heads {old.num_attention_heads}->"
          f"{new.num_attention_heads} ({old.num_query_groups} KV groups kept), layers {old.num_layers}->"
          f"{new.num_layers}, tied {new.tie_embeddings}")
    extra = {"pruning": {"pruned_from": str(args.input), "scores": str(args.scores),
                         "source_model": old.to_dict(), "kept": plan.to_json(),
                         "tied_by_averaging": plan.average_embeddings, "gqa_alignment": args.gqa_alignment}}
    out = convert.write_output(opened, sources.PrunedSource(opened.source, plan), args.output, dst_fmt,
                               convert.DTYPES.get(args.dtype), args.max_shard_size, extra_meta=extra)
    print(f"wrote {out}")
    return 0
