"""One optimizer step on megatron-core: DDP, the (distributed) optimizer, schedules.

    chunks = wrap_ddp(build_model(...), DDPSettings(overlap_grad_reduce=True, overlap_param_gather=True))
    optimizer = build_optimizer(chunks, OptimizerSettings(lr=3e-4, ...))
    result = train_step(chunks, optimizer, forward_step, batches, micro_batch_size=1, seq_length=128)
    sync_params(chunks)   # before reading or saving parameters when the gather is overlapped

`train_step` runs megatron's schedule for the current layout (no pipelining,
1F1B, or interleaved 1F1B), which all-reduces (or reduce-scatters, with the
distributed optimizer) gradients across data-parallel ranks, ties the shared
embedding gradients across pipeline stages, clips, and steps.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.distributed import DistributedDataParallel, DistributedDataParallelConfig, finalize_model_grads
from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer
from megatron.core.pipeline_parallel import get_forward_backward_func
from megatron.core.utils import get_model_config

from megatron_kanana.mcore import runtime


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """What megatron's optimizer needs; the trainer's optim section resolves to this."""

    lr: float
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_eps: float = 1e-8
    clip_grad: float = 1.0
    use_distributed_optimizer: bool = True
    optimizer: str = "adam"


@dataclasses.dataclass(frozen=True)
class DDPSettings:
    """How megatron's DDP reduces gradients and gathers parameters (Megatron-LM's names);
    the trainer's optim section resolves to this (training/optim.py)."""

    use_distributed_optimizer: bool = True
    overlap_grad_reduce: bool = False
    overlap_param_gather: bool = False
    align_param_gather: bool = True
    bucket_size: Optional[int] = None
    grad_reduce_in_fp32: bool = True


def wrap_ddp(chunks: list[torch.nn.Module], settings: DDPSettings | None = None, *,
             use_distributed_optimizer: Optional[bool] = None) -> list[DistributedDataParallel]:
    """`use_distributed_optimizer=` alone is shorthand for DDPSettings(use_distributed_optimizer=...)."""
    settings = settings or DDPSettings()
    if use_distributed_optimizer is not None:
        settings = dataclasses.replace(settings, use_distributed_optimizer=use_distributed_optimizer)
    config = get_model_config(chunks[0])
    ddp_config = DistributedDataParallelConfig(
        grad_reduce_in_fp32=settings.grad_reduce_in_fp32,
        overlap_grad_reduce=settings.overlap_grad_reduce,
        overlap_param_gather=settings.overlap_param_gather,
        align_param_gather=settings.align_param_gather,
        bucket_size=settings.bucket_size,
        use_distributed_optimizer=settings.use_distributed_optimizer,
    )
    wrapped = [
        DistributedDataParallel(config=config, ddp_config=ddp_config, module=chunk,
                                # only the first chunk's buckets may be smaller; megatron's rule
                                disable_bucketing=(i > 0))
        for i, chunk in enumerate(chunks)
    ]
    for chunk in wrapped:
        chunk.broadcast_params()  # identical replicas across data-parallel ranks
    _install_sync_hooks(config, wrapped, settings)
    return wrapped


def _install_sync_hooks(config, chunks: list[DistributedDataParallel], settings: DDPSettings) -> None:
    """What Megatron-LM's training loop sets on the model config for overlap: the schedules
    call these to start each chunk's gradient reduction as its last backward ends (with
    pipelining) and its parameter gather as its first forward begins (align_param_gather)."""
    def one_or_list(funcs):
        return funcs if len(funcs) > 1 else funcs[0]

    if settings.overlap_grad_reduce and parallel_state.get_pipeline_model_parallel_world_size() > 1:
        config.grad_sync_func = one_or_list([c.start_grad_sync for c in chunks])
    if settings.overlap_param_gather and settings.align_param_gather:
        config.param_sync_func = one_or_list([c.start_param_sync for c in chunks])


def sync_params(chunks: list[DistributedDataParallel]) -> None:
    """Finish the distributed optimizer's parameter all-gather now. With overlap_param_gather
    the step leaves it to the next forward, so each rank's parameters outside its own shard
    are one step stale until then: call this before saving, validating or reading them."""
    for chunk in chunks:
        if getattr(chunk, "use_forward_hook", False):
            chunk.disable_forward_pre_hook(param_sync=True)
            chunk.enable_forward_pre_hook()


def build_optimizer(chunks: list[DistributedDataParallel], settings: OptimizerSettings):
    model_config = get_model_config(chunks[0])
    config = OptimizerConfig(
        optimizer=settings.optimizer,
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        adam_beta1=settings.adam_beta1,
        adam_beta2=settings.adam_beta2,
        adam_eps=settings.adam_eps,
        clip_grad=settings.clip_grad,
        bf16=model_config.bf16,
        params_dtype=model_config.params_dtype,
        use_distributed_optimizer=settings.use_distributed_optimizer,
    )
    optimizer = get_megatron_optimizer(config, chunks)
    # The schedules read these hooks from the model config (megatron's training loop sets them).
    model_config.grad_scale_func = optimizer.scale_loss
    model_config.finalize_model_grads_func = finalize_model_grads
    model_config.no_sync_func = [c.no_sync for c in chunks] if len(chunks) > 1 else chunks[0].no_sync
    return optimizer


def set_learning_rate(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclasses.dataclass
class StepResult:
    loss: float              # mean over micro-batches and data-parallel ranks (same on every rank)
    grad_norm: Optional[float]
    update_successful: bool
    extra: dict


ForwardStep = Callable[[Iterator, torch.nn.Module], tuple]


def run_schedule(chunks: list[torch.nn.Module], forward_step: ForwardStep, micro_batches: list,
                 micro_batch_size: int, seq_length: int, forward_only: bool = False,
                 force_all_reduce: bool = False) -> list[dict]:
    """Run megatron's schedule for this layout over `micro_batches`; returns the
    loss dicts (non-empty on the last pipeline stage only)."""
    func = get_forward_backward_func()
    num_chunks = len(chunks)
    iterators = [iter(micro_batches) for _ in range(num_chunks)] if num_chunks > 1 else iter(micro_batches)
    return func(
        forward_step_func=forward_step,
        data_iterator=iterators,
        model=chunks if num_chunks > 1 else chunks[0],
        num_microbatches=len(micro_batches),
        seq_length=seq_length,
        micro_batch_size=micro_batch_size,
        forward_only=forward_only,
        force_all_reduce=force_all_reduce,
    )


def average_losses(loss_dicts: list[dict], key: str) -> float:
    """Mean of `key` over micro-batches, then over data-parallel ranks, broadcast
    from the last pipeline stage so every rank returns the same number."""
    value = torch.zeros(1, dtype=torch.float64)
    if loss_dicts:
        value[0] = torch.stack([d[key].detach().double().reshape(()) for d in loss_dicts]).mean()
    value = value.to(runtime.comm_device())
    dist.all_reduce(value, group=parallel_state.get_data_parallel_group())
    value /= parallel_state.get_data_parallel_world_size()
    last = parallel_state.get_pipeline_model_parallel_last_rank()
    dist.broadcast(value, src=last, group=parallel_state.get_pipeline_model_parallel_group())
    return float(value.item())


def train_step(chunks: list[DistributedDataParallel], optimizer, forward_step: ForwardStep,
               micro_batches: list, micro_batch_size: int, seq_length: int,
               loss_key: str = "lm loss", extra_keys: tuple[str, ...] = (), force_all_reduce: bool = False,
               before_optimizer: Optional[Callable[[], None]] = None,
               should_step: Optional[Callable[[float], bool]] = None) -> StepResult:
    """Forward/backward over all micro-batches, gradient reduction, clip, optimizer step.

    `extra_keys` name further entries of the loss dicts to average (e.g. "z loss");
    every rank must pass the same keys, since averaging is a collective.
    `should_step(loss)` sees the same averaged loss on every rank; returning False
    skips the optimizer step (the NaN guard), so all ranks skip together."""
    for chunk in chunks:
        chunk.zero_grad_buffer()
    optimizer.zero_grad()
    loss_dicts = run_schedule(chunks, forward_step, micro_batches, micro_batch_size, seq_length,
                              force_all_reduce=force_all_reduce)
    loss = average_losses(loss_dicts, loss_key)
    extra = {k: average_losses(loss_dicts, k) for k in extra_keys}
    if should_step is not None and not should_step(loss):
        return StepResult(loss=loss, grad_norm=None, update_successful=False, extra=extra)
    if before_optimizer is not None:
        before_optimizer()
    update_successful, grad_norm, _ = optimizer.step()
    return StepResult(loss=loss, grad_norm=grad_norm, update_successful=bool(update_successful), extra=extra)

