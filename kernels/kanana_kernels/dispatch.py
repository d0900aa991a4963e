"""Choosing an implementation: the one rule every op's dispatch point follows.

`impl="auto"` runs Triton for CUDA tensors when triton imports, else the plain
PyTorch reference. `impl="triton"` forces Triton; on CPU tensors that only works
under Triton's interpreter (TRITON_INTERPRET=1 set before the kernel modules are
imported), which is how the CPU tests run the kernels. `impl="torch"` forces the
reference.
"""
from __future__ import annotations

import functools
import importlib.util

import torch

IMPLS = ("auto", "triton", "torch")


@functools.cache
def triton_available() -> bool:
    return importlib.util.find_spec("triton") is not None


def resolve_impl(impl: str, tensor: torch.Tensor, op: str, allowed: tuple[str, ...] = IMPLS) -> str:
    """Return the implementation `op` runs for `tensor`: "triton", "torch" or another name in `allowed`."""
    if impl not in allowed:
        raise ValueError(f"{op}: impl must be one of {', '.join(allowed)}; got {impl!r}")
    if impl == "auto":
        return "triton" if tensor.is_cuda and triton_available() else "torch"
    if impl == "triton" and not triton_available():
        raise RuntimeError(f"{op}: impl='triton' requested but triton is not installed")
    return impl


def ensure_launchable(kernel, tensor: torch.Tensor, op: str) -> None:
    """Refuse to launch a GPU-compiled kernel on CPU tensors, with the fix in the message.

    Triton reads TRITON_INTERPRET when a kernel is decorated, i.e. when its
    module is first imported; setting the variable later has no effect.
    """
    if tensor.is_cuda:
        return
    from triton.runtime.interpreter import InterpretedFunction

    if not isinstance(kernel, InterpretedFunction):
        raise RuntimeError(
            f"{op}: Triton kernels on CPU tensors need the interpreter: set TRITON_INTERPRET=1 before "
            "kanana_kernels' Triton modules are imported (or use impl='torch')"
        )


def block_size(n: int, cap: int) -> int:
    """Smallest power of two >= n, capped: the tile width covering one row (or one slice of it)."""
    if n < 1:
        raise ValueError(f"block_size needs a positive size, got {n}")
    return min(1 << (n - 1).bit_length(), cap)
