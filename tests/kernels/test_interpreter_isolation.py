"""Runs the kernel tests in a fresh process when this one could not turn the Triton interpreter on.

See conftest.py: once triton is imported without TRITON_INTERPRET=1 (megatron.core
imports it), CPU kernels cannot be interpreted in this process, and the in-process
Triton tests skip. This test then runs them in a child pytest with the variable
set, so they are run exactly once either way.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.kernels.conftest import INTERPRETER_ACTIVE

HERE = Path(__file__).resolve().parent


def test_kernel_suite_in_fresh_process():
    if INTERPRETER_ACTIVE or torch.cuda.is_available():
        pytest.skip("the Triton kernel tests ran in this process")
    repo = HERE.parents[1]
    env = dict(os.environ, TRITON_INTERPRET="1",
               PYTHONPATH=os.pathsep.join([str(repo), str(repo / "kernels"), os.environ.get("PYTHONPATH", "")]))
    # The TP test already runs in its own subprocesses, so it is not repeated here.
    proc = subprocess.run([sys.executable, "-m", "pytest", str(HERE), "-q", "-p", "no:cacheprovider",
                           "--ignore", str(HERE / "test_linear_loss_tp.py"), "-k", "not fresh_process"],
                          cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
