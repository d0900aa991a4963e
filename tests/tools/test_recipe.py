"""`kanana recipe --quick --only ...` end to end: real sub-runs (stage 1, stage 2 on the quality
split, calibration, two prunes, two distillations), then the report's structure, verdicts that
follow from the stored numbers (whatever they are), a rerun that skips every finished sub-run
and reproduces the numbers (the refusals are in test_bad_inputs_catalog.py)."""
from __future__ import annotations

import json
import math
import operator
import subprocess
import sys

from tests.distributed.launch import cpu_env

ONLY = ("tying", "accounting")  # the pruning path and the paper arithmetic in ~3 minutes on 2 cores
OPS = {"<": operator.lt, "<=": operator.le, "==": operator.eq, ">": operator.gt}


def recipe(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "megatron_kanana.cli", "recipe", *args]
    return subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=timeout)


def expected_verdict(checks: list[dict]) -> str:
    held = [OPS[c["op"]](c["lhs"], c["rhs"]) for c in checks]
    return "reproduced" if all(held) else "not reproduced" if not any(held) else "partly reproduced"


def test_quick_recipe_report_follows_from_its_runs_and_resumes(tmp_path):
    out = tmp_path / "recipe"
    args = ("--output", str(out), "--quick", "--seed", "3", "--only", ",".join(ONLY))
    first = recipe(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["seed"] == 3 and report["quick"] is True and set(report["claims"]) == set(ONLY)
    progress = [line for line in first.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == len(report["subruns"]) == 7
    for name, c in report["claims"].items():
        assert {"title", "paper", "measured", "checks", "verdict"} <= set(c) and c["seed"] == 3, name
        assert c["paper"] and c["checks"]
        for check in c["checks"]:
            assert check["holds"] == OPS[check["op"]](check["lhs"], check["rhs"]), check
        assert c["verdict"] == expected_verdict(c["checks"]), name
    tying = report["claims"]["tying"]["measured"]["heldout_mean_loss"]
    for loss in list(tying.values()) + [report["claims"]["tying"]["measured"]["teacher_heldout_mean_loss"]]:
        assert 0 < loss < math.log(2048) + 1  # a trained model: below chance (log vocabulary) plus slack
    ledger = report["claims"]["accounting"]["measured"]["miniature_flop_ledger"]
    assert ledger["prune/tied"] > 0 and ledger["prune/kanana"] > 0
    md = (out / "report.md").read_text()
    for c in report["claims"].values():
        assert c["title"] in md and f"**{c['verdict']}**" in md
    for plot in report["plots"]:
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    again = recipe(*args)  # everything finished: skipped, same numbers
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished earlier: skipped") == 7
    assert json.loads((out / "report.json").read_text())["claims"] == report["claims"]
