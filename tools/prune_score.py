"""Megatron-LM-style entry point for `kanana prune-score`: activation importance scores for pruning.

    python tools/prune_score.py --help

The tool is a thin CLI over pure functions in megatron_kanana (see `kanana prune-score --help`);
this file only forwards its arguments, for users used to Megatron-LM's tools/ scripts.
"""
import sys

from megatron_kanana.cli import main

if __name__ == "__main__":
    sys.exit(main(["prune-score", *sys.argv[1:]]))
