"""Run several `kanana` CLI invocations in one process (one megatron import for all).

    python tests/tools/cli_driver.py CALLS.json RESULTS.json

CALLS.json: [["convert", "--from", "hf", ...], ...]; RESULTS.json gets, per call,
{"rc": exit status, "stderr": what the command wrote to stderr}. A call may instead be
{"tamper": CKPT, "copy_to": DIR, "model": {...}}: copy a checkpoint and overwrite
fields of its kanana.json model shape (to make a shape that contradicts the tensors).
"""
from __future__ import annotations

import contextlib
import io
import json
import shutil
import sys
from pathlib import Path

from megatron_kanana import cli
from megatron_kanana.checkpointing import layout


def tamper(op: dict) -> None:
    source = layout.resolve(Path(op["tamper"]))
    target = Path(op["copy_to"]) / source.name
    shutil.copytree(source, target)
    meta = layout.read_meta(target)
    meta["model"].update(op["model"])
    layout.write_meta(target, meta)
    layout.write_latest(Path(op["copy_to"]), source.name)


def main() -> None:
    calls = json.loads(open(sys.argv[1]).read())
    results = []
    for argv in calls:
        if isinstance(argv, dict):
            tamper(argv)
            continue
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = cli.main(argv)
        results.append({"argv": argv, "rc": rc, "stderr": err.getvalue()})
    with open(sys.argv[2], "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
