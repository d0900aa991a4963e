"""`kanana curate`: run the curation pipeline over a directory of JSONL shards.

    kanana curate --config examples/curation/kanana_pipeline.yaml --input DIR --output OUT

Prints the per-stage statistics (also saved to OUT/stats.json). Rerunning the
same command after a crash resumes at shard granularity.
"""
from __future__ import annotations

import argparse
import json

from megatron_kanana.curation.config import load_pipeline_config
from megatron_kanana.curation.pipeline import run_pipeline


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="pipeline YAML (see examples/curation/kanana_pipeline.yaml)")
    parser.add_argument("--input", required=True, help="directory of .jsonl / .jsonl.gz shards")
    parser.add_argument("--output", required=True, help="output directory (data/, rejected/, stats.json)")
    parser.add_argument("--workers", type=int, help="override run.workers")
    parser.add_argument("--json", action="store_true", help="print the statistics as JSON")


def run(args: argparse.Namespace) -> int:
    config = load_pipeline_config(args.config)
    if args.workers is not None:
        config = config.replace(run=config.run.replace(workers=args.workers))
    stats = run_pipeline(config, args.input, args.output)
    print(json.dumps(stats.to_dict(), indent=1, ensure_ascii=False) if args.json else stats.table())
    return 0
