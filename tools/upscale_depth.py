"""Megatron-LM-style entry point for `kanana upscale-depth`: depth up-scaling (SOLAR-style layer stacking).

    python tools/upscale_depth.py --help

The tool is a thin CLI over pure functions in megatron_kanana (see `kanana upscale-depth --help`);
this file only forwards its arguments, for users used to Megatron-LM's tools/ scripts.
"""
import sys

from megatron_kanana.cli import main

if __name__ == "__main__":
    sys.exit(main(["upscale-depth", *sys.argv[1:]]))
