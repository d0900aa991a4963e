"""Run megatron-core's real parallel code in CPU processes over gloo.

megatron-core hard-codes CUDA in ~250 places (`device='cuda'`, `.cuda()`,
`torch.cuda.current_device()`, CUDA RNG state, `param.type() ==
'torch.cuda.FloatTensor'` checks in the distributed optimizer). Rather than
fork it, this backend redirects those calls while it is active:

* a `TorchFunctionMode` rewrites every CUDA device argument (string,
  `torch.device` or index) to the CPU, makes `Tensor.cuda()` return the tensor
  itself, drops `pin_memory`, and reports `torch.cuda.<X>Tensor` from
  `Tensor.type()` so megatron's dtype checks pass;
* CPU stand-ins for the few `torch.cuda` device, memory, stream and RNG
  functions. The "CUDA" RNG *is* the CPU default generator, so megatron's
  RNG tracker forks it exactly as it forks the CUDA generator on a GPU and
  dropout inside tensor-parallel regions draws from the forked state.

It is switched on by `enable()` only when no GPU is used (see
`megatron_kanana.mcore.runtime.select_device`), never on a GPU, and it is
process-wide: megatron-core creates tensors from many threads and call
sites, so a scoped mode would miss some.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable

import torch
from torch.overrides import TorchFunctionMode

_lock = threading.Lock()
_state: dict[str, Any] = {"mode": None, "patches": []}


def _is_cuda_device(value: Any) -> bool:
    if isinstance(value, torch.device):
        return value.type == "cuda"
    if isinstance(value, str):
        return value == "cuda" or value.startswith("cuda:")
    return False


def _to_cpu_device(value: Any, allow_index: bool) -> Any:
    if _is_cuda_device(value):
        return torch.device("cpu")
    if allow_index and isinstance(value, int) and not isinstance(value, bool):
        return torch.device("cpu")
    return value


class _CudaToCpu(TorchFunctionMode):
    """Rewrites CUDA placement to CPU for every torch call made while active."""

    def __torch_function__(self, func: Callable, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.device:  # torch.device("cuda", 0) / torch.device("cuda:1")
            if args and _is_cuda_device(args[0]) or kwargs.get("type") == "cuda":
                return torch.device("cpu")
            return func(*args, **kwargs)
        if func is torch.Tensor.type and len(args) == 1 and not kwargs:
            name = func(*args)
            return name.replace("torch.", "torch.cuda.", 1) if not name.startswith("torch.cuda.") else name
        if func in (torch.Tensor.pin_memory,):
            return args[0]
        if "device" in kwargs:
            kwargs["device"] = _to_cpu_device(kwargs["device"], allow_index=True)
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        if func is torch.Tensor.to:
            # Tensor.to(0) means "device 0"; Tensor.to(torch.float) does not match.
            args = tuple(_to_cpu_device(a, allow_index=(i == 1)) for i, a in enumerate(args))
        elif any(_is_cuda_device(a) for a in args):
            args = tuple(_to_cpu_device(a, allow_index=False) for a in args)
        return func(*args, **kwargs)


def _rng_get_state(device: Any = "cuda", *_, **__) -> torch.Tensor:
    return torch.get_rng_state()


def _rng_set_state(state: torch.Tensor, device: Any = "cuda", *_, **__) -> None:
    torch.set_rng_state(state)


def _cpu_stand_ins() -> list[tuple[Any, str, Any]]:
    """(owner, attribute, replacement) for every torch.cuda / megatron call redirected."""
    from megatron.core.tensor_parallel import random as mcore_random

    zero = lambda *_, **__: 0  # noqa: E731
    none = lambda *_, **__: None  # noqa: E731
    stand_ins = [
        (torch.cuda, "current_device", zero),
        (torch.cuda, "set_device", none),
        (torch.cuda, "synchronize", none),
        (torch.cuda, "empty_cache", none),
        (torch.cuda, "memory_allocated", zero),
        (torch.cuda, "max_memory_allocated", zero),
        (torch.cuda, "memory_reserved", zero),
        (torch.cuda, "reset_peak_memory_stats", none),
        # torch.manual_seed itself calls torch.cuda.manual_seed_all: seed the
        # CPU generator directly and make the "all devices" variant a no-op.
        (torch.cuda, "manual_seed", lambda seed: torch.default_generator.manual_seed(int(seed))),
        (torch.cuda, "manual_seed_all", none),
        (torch.cuda, "get_rng_state", _rng_get_state),
        (torch.cuda, "set_rng_state", _rng_set_state),
        (torch.cuda.random, "get_rng_state", _rng_get_state),
        (torch.cuda.random, "set_rng_state", _rng_set_state),
        (torch.cuda.random, "manual_seed", lambda seed: torch.default_generator.manual_seed(int(seed))),
        (torch.cuda.random, "manual_seed_all", none),
        (torch.cuda, "current_stream", lambda *_, **__: _NullStream()),
        (torch.cuda, "default_stream", lambda *_, **__: _NullStream()),
        (torch.cuda, "Stream", _NullStream),
        (torch.cuda, "stream", lambda *_, **__: contextlib.nullcontext()),
        (mcore_random, "_get_cuda_rng_state", lambda *_, **__: torch.get_rng_state()),
        (mcore_random, "_set_cuda_rng_state", lambda state, *_, **__: torch.set_rng_state(state)),
    ]
    return stand_ins


class _NullStream:
    """A CUDA stream stand-in: CPU work is already ordered."""

    def __init__(self, *_, **__):
        pass

    def wait_stream(self, *_):
        pass

    def wait_event(self, *_):
        pass

    def record_event(self, *_):
        return None

    def synchronize(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *_):
        return False


def is_enabled() -> bool:
    return _state["mode"] is not None


def enable(force: bool = False) -> None:
    """Turn the CPU backend on for this process (idempotent).

    On a machine with a GPU it refuses unless `force` (the user asked for CPU
    explicitly, e.g. `KANANA_DEVICE=cpu`): then megatron runs on the CPU and
    the GPU is left alone."""
    with _lock:
        if _state["mode"] is not None:
            return
        if torch.cuda.is_available() and not force:
            raise RuntimeError("the CPU backend is off on a GPU machine; set KANANA_DEVICE=cpu to force it")
        patches = []
        for owner, name, replacement in _cpu_stand_ins():
            patches.append((owner, name, getattr(owner, name)))
            setattr(owner, name, replacement)
        mode = _CudaToCpu()
        mode.__enter__()
        _state.update(mode=mode, patches=patches)


def disable() -> None:
    """Undo `enable()` (tests use it; a training process keeps it on until exit)."""
    with _lock:
        mode = _state["mode"]
        if mode is None:
            return
        mode.__exit__(None, None, None)
        for owner, name, original in reversed(_state["patches"]):
            setattr(owner, name, original)
        _state.update(mode=None, patches=[])


@contextlib.contextmanager
def in_this_thread():
    """Make the backend's placement rewrite active in the calling thread too.

    torch keeps the TorchFunctionMode stack per thread, so the mode `enable()`
    entered covers only the thread that called it: megatron code run from another
    thread (generation beside training) would place tensors on "cuda" and fail.
    The torch.cuda stand-ins are module patches and already cover every thread.
    A no-op while the backend is off; harmless where the mode is already active.
    """
    if not is_enabled():
        yield
        return
    with _CudaToCpu():
        yield
