"""Launch a script under torchrun (gloo, CPU) with a hard timeout, so a hung rank
fails the test instead of blocking CI."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "kernels"), env.get("PYTHONPATH", "")]))
    env.setdefault("KANANA_DEVICE", "cpu")
    return env


def torchrun(script: str | Path, nproc: int, args: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}",
           f"--master-port={_free_port()}", "--max-restarts=0", str(script), *args]
    try:
        proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"torchrun timed out after {timeout}s: {' '.join(cmd)}\n{e.stdout}\n{e.stderr}") from None
    if proc.returncode != 0:
        raise AssertionError(f"torchrun failed ({proc.returncode}): {' '.join(cmd)}\n"
                             f"stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-8000:]}")
    return proc


def python(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """A single-process run (a world of one) with the same environment."""
    proc = subprocess.run([sys.executable, *args], env=cpu_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{args} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc


def kanana(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run a `kanana` subcommand (python -m megatron_kanana.cli ...) in the CPU environment."""
    cmd = [sys.executable, "-m", "megatron_kanana.cli", *args]
    proc = subprocess.run(cmd, env=cpu_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc
