"""megatron-core dist_checkpointing: layout-independent save and load.

A checkpoint written at one TP/PP/VPP layout loads at any other: each tensor
is stored with its global shape and offsets, and `load` reads just the slices
this rank owns. Loading never runs code from the checkpoint: every read of
`.metadata` (megatron's load, load_tensors_metadata, load_sharded_metadata)
goes through checkpointing/safe_load's restricted unpickler, and the common
state and sharded objects are loaded weights-only (see `load`).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.api import CheckpointException
from megatron.core import dist_checkpointing
from megatron.core.dist_checkpointing.strategies import torch as megatron_torch_strategy
from megatron.core.dist_checkpointing.strategies.async_utils import AsyncCallsQueue
from megatron.core.dist_checkpointing.core import CheckpointingException
from megatron.core.tensor_parallel import get_cuda_rng_tracker

from megatron_kanana.checkpointing.layout import CheckpointError
from megatron_kanana.mcore import compat

from megatron_kanana.checkpointing.safe_load import SafeFileSystemReader, load_weights_only, read_dcp_metadata


def _safe_filesystem_reader(checkpoint_dir, cache_metadata: bool = False, **_unused) -> SafeFileSystemReader:
    # **_unused: 0.19 also passes async_strategy= (which reader class to cache metadata with)
    return SafeFileSystemReader(checkpoint_dir)  # caches its metadata either way


def _load_common_weights_only(checkpoint_dir) -> dict:
    """A dist checkpoint's common.pt (0.16's layout), weights-only whatever the environment says
    (megatron calls torch.load without weights_only, which TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD flips)."""
    path = Path(checkpoint_dir) / compat.COMMON_STATE
    if not path.is_file():
        raise CheckpointError(f"{checkpoint_dir}: {compat.COMMON_STATE} is missing (incomplete checkpoint)")
    return load_weights_only(path)


# megatron-core builds every DCP reader (load, load_tensors_metadata, load_sharded_metadata)
# through one module function, whose FileSystemReader unpickles `.metadata` with plain pickle
# and byte items with torch.load(weights_only=False). Replacing it covers every load in a process
# that imports this module, including the ones that call dist_checkpointing directly
# (mcore/reward_head.py). How the common state is read differs by version: compat says where.
megatron_torch_strategy._get_filesystem_reader = _safe_filesystem_reader
_COMMON_LOAD_KWARGS = compat.install_safe_common_state(_safe_filesystem_reader, _load_common_weights_only)


def load(sharded_state_dict: dict, directory: str | Path) -> dict:
    """dist_checkpointing.load with safe readers; a bad or tampered checkpoint is a
    CheckpointError naming the file, raised before megatron starts reading."""
    read_dcp_metadata(directory)  # a clean error here, instead of one wrapped by every rank's DCP collective
    compat.check_checkpoint_readable(directory)  # a newer megatron-core's layout: refused naming both versions
    try:
        return dist_checkpointing.load(sharded_state_dict, str(directory), **_COMMON_LOAD_KWARGS)
    except CheckpointError:
        raise
    except (FileNotFoundError, EOFError, CheckpointingException, CheckpointException, RuntimeError) as e:
        # a deleted or truncated shard: torch reports it per rank, without the checkpoint's name
        raise CheckpointError(f"{directory}: cannot read the checkpoint (missing or truncated shard?): "
                              f"{_root_cause(e)}") from None


def _root_cause(e: BaseException) -> str:
    """The first rank's own error inside torch DCP's per-rank CheckpointException, on one line."""
    if isinstance(e, CheckpointException) and e.failures:
        cause = next(iter(e.failures.values()))[0]
        if isinstance(cause, CheckpointError):
            raise cause from None  # our own reader refused something: its message says what
        e = cause
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"


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
    state = load(model_sharded_state_dict(chunks), directory)
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
    state = load(request, directory)
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
