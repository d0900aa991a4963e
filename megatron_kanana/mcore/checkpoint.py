"""megatron-core dist_checkpointing: layout-independent save and load.

A checkpoint written at one TP/PP/VPP layout loads at any other: each tensor
is stored with its global shape and offsets, and `load` reads just the slices
this rank owns. Loading never unpickles arbitrary objects.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_kanana.mcore import compat


def model_sharded_state_dict(chunks: list[torch.nn.Module]) -> dict:
    """Megatron's convention: `model` for one chunk, `model0`, `model1`, ... with VPP."""
    modules = [getattr(c, "module", c) for c in chunks]
    if len(modules) == 1:
        return {"model": modules[0].sharded_state_dict()}
    return {f"model{i}": m.sharded_state_dict() for i, m in enumerate(modules)}


def save_model(chunks: list[torch.nn.Module], directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dist_checkpointing.save(model_sharded_state_dict(chunks), str(directory))


def load_model(chunks: list[torch.nn.Module], directory: str | Path, strict: bool = True) -> None:
    compat.check_checkpoint_readable(directory)
    state = dist_checkpointing.load(model_sharded_state_dict(chunks), str(directory))
    modules = [getattr(c, "module", c) for c in chunks]
    if len(modules) == 1:
        modules[0].load_state_dict(state["model"], strict=strict)
    else:
        for i, m in enumerate(modules):
            m.load_state_dict(state[f"model{i}"], strict=strict)


@contextlib.contextmanager
def gradients_as_weights(chunks: list[torch.nn.Module]) -> Iterator[None]:
    """Temporarily point every parameter's data at its gradient, so the
    checkpoint machinery can save or reshard gradients like weights (used by
    the parity tests to compare gradients across layouts)."""
    saved = []
    for chunk in chunks:
        for p in chunk.parameters():
            grad = getattr(p, "main_grad", None)
            if grad is None:
                grad = p.grad if p.grad is not None else torch.zeros_like(p)
            saved.append((p, p.data))
            p.data = grad.detach().to(p.dtype).reshape(p.shape)
    try:
        yield
    finally:
        for p, data in saved:
            p.data = data


# 'fully_reshardable' stores optimizer state per parameter in model space (gathered over
# DP at save), so it loads at any TP/PP/DP; megatron-core 0.16.1's default
# 'fully_sharded_model_space' raises "flattened_range is not supported" on save.
_OPTIMIZER_FORMAT = {"distrib_optim_sharding_type": "fully_reshardable"}


def save_training_state(chunks: list[torch.nn.Module], optimizer, directory: str | Path,
                        async_queue: "AsyncCallsQueue | None" = None, on_done=None) -> None:
    """Model + optimizer (fully sharded in model space, so it reshards on load)
    into `directory` (which must exist and be empty). With `async_queue` the
    write happens in the background and `on_done()` runs on every rank once all
    shards are on disk; otherwise `on_done()` runs before returning."""
    model_sd = model_sharded_state_dict(chunks)
    state = dict(model_sd)
    if optimizer is not None:
        state["optimizer"] = optimizer.sharded_state_dict(model_sd, metadata=_OPTIMIZER_FORMAT)
    if async_queue is None:
        dist_checkpointing.save(state, str(directory))
        if on_done is not None:
            on_done()
        return
    request = dist_checkpointing.save(state, str(directory), async_sharded_save=True)
    if on_done is not None:
        request.add_finalize_fn(on_done)
    async_queue.schedule_async_request(request)


def new_async_queue() -> AsyncCallsQueue:
    return AsyncCallsQueue()


def _materialise_torch_adam_state(optimizer) -> None:
    """Give every parameter an (empty) Adam state, step included.

    Without apex/Transformer Engine megatron falls back to torch.optim.AdamW, whose
    state appears only after the first step; megatron's distributed optimizer then
    fails to build the state dict it loads into (it asserts one common 'step').
    The values are overwritten by the load."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if not isinstance(inner, torch.optim.AdamW):
            continue
        for group in inner.param_groups:
            for p in group["params"]:
                state = inner.state[p]
                if not state:
                    state["step"] = torch.zeros((), dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p.data)
                    state["exp_avg_sq"] = torch.zeros_like(p.data)


def _keep_step_on_load(optimizer) -> None:
    """megatron-core 0.16.1 with torch AdamW (no apex/TE): loading 'fully_reshardable'
    state sets a per-parameter 'step' and then copies every state key from the
    checkpoint's tensors, which carry no 'step' (KeyError). Let the step set from
    the checkpoint's param groups stand instead."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        original = getattr(opt, "_set_main_param_and_optimizer_states", None)
        if original is None or getattr(original, "_kanana_keeps_step", False):
            continue

        def keep_step(model_param, tensors, _original=original, _opt=opt):
            if "step" not in tensors:
                group, order = _opt.model_param_group_index_map[model_param]
                state = _opt.optimizer.state[_opt.optimizer.param_groups[group]["params"][order]]
                if "step" in state:
                    tensors = {**tensors, "step": state["step"]}
            return _original(model_param, tensors)

        keep_step._kanana_keeps_step = True
        opt._set_main_param_and_optimizer_states = keep_step


def _unshare_adam_steps(optimizer) -> None:
    """megatron-core 0.16.1 (torch AdamW path) restores one 'step' tensor shared by every
    parameter; torch increments each parameter's step in place, so a shared tensor
    would advance once per parameter per step and corrupt Adam's bias correction."""
    for opt in getattr(optimizer, "chained_optimizers", [optimizer]):
        inner = getattr(opt, "optimizer", None)
        if isinstance(inner, torch.optim.AdamW):
            for state in inner.state.values():
                if "step" in state:
                    state["step"] = state["step"].clone()


def load_training_state(chunks: list[torch.nn.Module], optimizer, directory: str | Path) -> None:
    """Load model (and optimizer, when given) from a checkpoint saved at any layout."""
    model_sd = model_sharded_state_dict(chunks)
    request = dict(model_sd)
    if optimizer is not None:
        _materialise_torch_adam_state(optimizer)
        request["optimizer"] = optimizer.sharded_state_dict(model_sd, is_loading=True, metadata=_OPTIMIZER_FORMAT)
    compat.check_checkpoint_readable(directory)
    state = dist_checkpointing.load(request, str(directory))
    modules = [getattr(c, "module", c) for c in chunks]
    for i, m in enumerate(modules):
        m.load_state_dict(state["model"] if len(modules) == 1 else state[f"model{i}"], strict=True)
    if optimizer is not None:
        _keep_step_on_load(optimizer)
        optimizer.load_state_dict(state["optimizer"])
        _unshare_adam_steps(optimizer)


def rng_state() -> dict[str, torch.Tensor]:
    """This rank's RNG streams as plain tensors (safe to load with weights_only)."""
    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    for name, value in get_cuda_rng_tracker().get_states().items():
        state[f"tracker.{name}"] = value
    return state


def set_rng_state(state: dict[str, torch.Tensor]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    tracker = {k[len("tracker."):]: v for k, v in state.items() if k.startswith("tracker.")}
    if tracker:
        get_cuda_rng_tracker().set_states(tracker)


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
