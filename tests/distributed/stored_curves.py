"""Stored loss curves: fixed-seed CPU runs of every objective, recorded once, compared after.

    check_curve("dpo_tp2", run_dir)     # in a test, after `kanana train` wrote run_dir/metrics.jsonl

A curve is every number a run logs that its seed decides — train losses, gradient norms,
learning rates, the objectives' metrics, validation losses — and none that the clock decides
(seconds, throughput, memory). Refactors of the trainer must leave them unchanged: the
comparison is to 1e-6 relative, which fp32 reproduces exactly on the same machine and a
changed computation does not. `KANANA_RECORD_CURVES=1` rewrites the stored files instead of
comparing (do it only on a commit whose numbers are the reference, and say so in its message).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

CURVES = Path(__file__).parent / "curves"
CLOCK_WORDS = ("time", "seconds", "tokens_per_s", "memory", "tflops", "mfu", "wait")


def read_curve(run_dir: Path) -> dict[str, list[dict]]:
    """{"train": [{iteration, key: value...}], "validation": [...]} of the seed-decided numbers."""
    curve: dict[str, list[dict]] = {"train": [], "validation": []}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("kind") == "train":
            curve["train"].append({k: v for k, v in record.items() if _seeded(k, v)})
        elif record.get("kind") == "validation":
            curve["validation"].append({"iteration": record["iteration"], **record["losses"]})
    return curve


def _seeded(key: str, value) -> bool:
    if key == "kind" or any(word in key for word in CLOCK_WORDS):
        return False
    return isinstance(value, (int, float)) or value is None


def check_curve(name: str, run_dir: Path, rel: float = 1e-6) -> None:
    path = CURVES / f"{name}.json"
    got = read_curve(run_dir)
    if os.environ.get("KANANA_RECORD_CURVES") == "1":
        CURVES.mkdir(exist_ok=True)
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        return
    if not path.exists():
        pytest.fail(f"no stored curve {path}: record it with KANANA_RECORD_CURVES=1 on a reference commit")
    expected = json.loads(path.read_text())
    for kind in ("train", "validation"):
        assert len(got[kind]) == len(expected[kind]), (name, kind, len(got[kind]), len(expected[kind]))
        for a, b in zip(got[kind], expected[kind]):
            assert set(a) == set(b), (name, kind, b.get("iteration"), sorted(set(a) ^ set(b)))
            for key, want in b.items():
                have = a[key]
                if want is None or have is None or (isinstance(want, float) and math.isnan(want)):
                    assert repr(have) == repr(want), (name, kind, b["iteration"], key, have, want)
                else:
                    assert have == pytest.approx(want, rel=rel, abs=1e-12), (name, kind, b["iteration"], key)
