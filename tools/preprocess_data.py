"""Megatron-LM-style entry point for `kanana preprocess`: JSONL -> megatron-core indexed dataset.

    python tools/preprocess_data.py --help

The tool is a thin CLI over pure functions in megatron_kanana (see `kanana preprocess --help`);
this file only forwards its arguments, for users used to Megatron-LM's tools/ scripts.
"""
import sys

from megatron_kanana.cli import main

if __name__ == "__main__":
    sys.exit(main(["preprocess", *sys.argv[1:]]))
