"""Megatron-LM-style entry point for `kanana prune`: width/depth pruning by importance scores.

    python tools/prune.py --help

The tool is a thin CLI over pure functions in megatron_kanana (see `kanana prune --help`);
this file only forwards its arguments, for users used to Megatron-LM's tools/ scripts.
"""
import sys

from megatron_kanana.cli import main

if __name__ == "__main__":
    sys.exit(main(["prune", *sys.argv[1:]]))
