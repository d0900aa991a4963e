"""Megatron-LM-style entry point for `kanana convert`: Hugging Face <-> megatron-core checkpoint conversion.

    python tools/convert_checkpoint.py --help

The tool is a thin CLI over pure functions in megatron_kanana (see `kanana convert --help`);
this file only forwards its arguments, for users used to Megatron-LM's tools/ scripts.
"""
import sys

from megatron_kanana.cli import main

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
