"""Run kanana_kernels' Triton kernels on CPU through Triton's interpreter.

What works (checked with triton 3.9): TRITON_INTERPRET=1 must be in the
environment before `import triton` itself, not just before our kernel modules,
because triton.language's own helpers (tl.sum, tl.max, ...) are @triton.jit
functions decorated when triton is imported; a kernel interpreted later cannot
call them. Anything imported earlier in the same pytest process can import
triton first: megatron.core does. So this conftest sets the variable when
triton is not yet imported and records whether the interpreter is really on.
If it is not (and there is no GPU to run the kernels natively), the in-process
Triton tests skip with a pointer to test_interpreter_isolation.py, which then
runs this folder again in a fresh pytest process with TRITON_INTERPRET=1, so the
kernels are tested exactly once either way. The variable stays set for the rest
of the session (harmless on CPU: nothing else launches Triton kernels there).
"""
from __future__ import annotations

import os
import sys

import pytest
import torch

# On a GPU machine the kernels run natively on CUDA tensors instead, and the
# variable is left alone so GPU tests elsewhere in the session compile for real.
if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def _interpreter_active() -> bool:
    try:
        import triton.language as tl
        from triton.runtime.interpreter import InterpretedFunction
    except ImportError:
        return False
    return isinstance(tl.sum, InterpretedFunction)


INTERPRETER_ACTIVE = _interpreter_active()
TRITON_SKIP_REASON = ("triton was imported before TRITON_INTERPRET=1 could be set in this process; "
                      "test_interpreter_isolation.py runs tests/kernels in a fresh process instead")


@pytest.fixture
def device() -> str:
    """Where the Triton tests run: CPU under the interpreter, else CUDA, else skip (see module docstring)."""
    if INTERPRETER_ACTIVE:
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    pytest.skip(TRITON_SKIP_REASON)
