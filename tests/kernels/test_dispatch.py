"""The dispatch rule, lazy imports, and the package's independence from megatron.core."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import torch

from kanana_kernels import rms_norm
from kanana_kernels.dispatch import block_size, resolve_impl

REPO = Path(__file__).resolve().parents[2]

_FRESH_PROCESS_CHECK = """
import sys, torch
import kanana_kernels
assert not any(m == "megatron" or m.startswith("megatron.") for m in sys.modules), "megatron imported"
assert "triton" not in sys.modules, "triton imported eagerly"
try:
    kanana_kernels.rms_norm(torch.ones(2, 8), torch.ones(8), impl="triton")
except RuntimeError as e:
    assert "TRITON_INTERPRET=1" in str(e), e
else:
    raise AssertionError("a GPU-compiled kernel launched on CPU tensors")
print("ok")
"""


def test_auto_runs_the_reference_on_cpu():
    assert resolve_impl("auto", torch.ones(1), "op") == "torch"
    x, w = torch.randn(3, 16), torch.randn(16)
    assert torch.equal(rms_norm(x, w, impl="auto")[0], rms_norm(x, w, impl="torch")[0])


def test_block_size():
    assert [block_size(n, 64) for n in (1, 48, 64, 100)] == [1, 64, 64, 64]
    assert block_size(100, 4096) == 128


def test_import_is_light_and_cpu_triton_needs_the_interpreter():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "kernels")])
    proc = subprocess.run([sys.executable, "-c", _FRESH_PROCESS_CHECK], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_source_file_imports_megatron():
    files = list((REPO / "kernels" / "kanana_kernels").rglob("*.py"))
    assert len(files) > 10
    offenders = [p for p in files if any(m.split(".")[0] == "megatron" for m in _imported_modules(p))]
    assert not offenders, f"kanana_kernels must not import megatron.core: {offenders}"
