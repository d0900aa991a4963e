"""Vocab-parallel fused CE and KL at TP=2 over gloo equal the single-process versions (value and gradient)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.distributed
def test_tp2_matches_single_process(tmp_path):
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "kernels"), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("tp_worker.py")), str(tmp_path / "init")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"tp_worker failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    assert "all cases match" in proc.stdout
