"""Process groups and seeds: start and stop megatron-core's parallel state.

    runtime = initialize(parallel, shape, seed=1234)   # under torchrun, or alone
    ...
    shutdown()

The device is CUDA when a GPU is present, else the CPU backend
(`cpu_backend.py`) with gloo; `KANANA_DEVICE=cpu|cuda` overrides (read with the
launcher's variables, once, by `parallel/launch_env.py`). Layout
errors are raised by `parallel.config.check_layout` before any group exists.
"""
from __future__ import annotations

import dataclasses
import datetime
import os
import socket
from typing import Optional

import torch
import torch.distributed as dist
from megatron.core import parallel_state
from megatron.core.process_groups_config import ProcessGroupCollection
from megatron.core.tensor_parallel import model_parallel_cuda_manual_seed

from megatron_kanana.log import set_log_rank
from megatron_kanana.mcore import cpu_backend
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel.config import ParallelConfig, ParallelLayout, check_layout
from megatron_kanana.parallel.launch_env import LaunchEnv


@dataclasses.dataclass(frozen=True)
class Runtime:
    """Built once per process by `initialize` and passed to what needs it: nothing below the
    CLI reads the launcher's environment or megatron's global parallel state."""

    device: str  # "cuda" or "cpu"
    rank: int
    world_size: int
    layout: ParallelLayout
    data_rank: int = 0           # this rank's data-parallel replica index
    local_rank: int = 0
    groups: Optional[ProcessGroupCollection] = None  # megatron's model groups + "dp" for this layout


def select_device(choice: str = "auto") -> str:
    if choice not in ("auto", "cpu", "cuda"):
        raise ValueError(f"KANANA_DEVICE must be auto, cpu or cuda, got {choice!r}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("KANANA_DEVICE=cuda but no CUDA device is available")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init_process_group(env: LaunchEnv, device: str, timeout_s: int) -> None:
    if dist.is_initialized():
        return
    backend = "nccl" if device == "cuda" else "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    if device == "cuda" and env.launcher != "none":
        torch.cuda.set_device(env.local_rank)
    if env.launcher == "torchrun":  # torchrun's rendezvous variables (env://)
        dist.init_process_group(backend=backend, timeout=timeout)
    elif env.launcher == "slurm":  # srun tasks: SLURM's ranks, the sbatch script's address
        dist.init_process_group(backend=backend, init_method=f"tcp://{env.master_addr}:{env.master_port}",
                                rank=env.rank, world_size=env.world_size, timeout=timeout)
    else:  # a lone process: a world of one
        dist.init_process_group(backend=backend, init_method=f"tcp://127.0.0.1:{_free_port()}",
                                rank=0, world_size=1, timeout=timeout)


def initialize(parallel: ParallelConfig, shape: ModelShape, seed: int = 1234,
               timeout_s: int = 600, env: Optional[LaunchEnv] = None) -> Runtime:
    """Validate the layout, start torch.distributed and megatron's groups, seed RNGs.
    `env`: where this process sits in the job (default: detected from the environment)."""
    env = env or LaunchEnv.detect()
    set_log_rank(env.rank)
    device = select_device(env.device_choice)
    layout = check_layout(parallel, shape, env.world_size, device)
    if device == "cpu":
        cpu_backend.enable(force=torch.cuda.is_available())
    _init_process_group(env, device, timeout_s)
    if not parallel_state.model_parallel_is_initialized():
        parallel_state.initialize_model_parallel(
            tensor_model_parallel_size=layout.tensor,
            pipeline_model_parallel_size=layout.pipeline,
            virtual_pipeline_model_parallel_size=layout.virtual_pipeline,
            context_parallel_size=layout.context,
        )
    torch.manual_seed(seed)
    model_parallel_cuda_manual_seed(seed)
    groups = ProcessGroupCollection.use_mpu_process_groups([*MODEL_GROUPS, "dp"])
    return Runtime(device=device, rank=dist.get_rank(), world_size=dist.get_world_size(), layout=layout,
                   data_rank=parallel_state.get_data_parallel_rank(), local_rank=env.local_rank, groups=groups)


def comm_device() -> torch.device:
    """Where tensors handed to collectives live: the current GPU under NCCL, else the CPU (gloo)."""
    if torch.cuda.is_available() and not cpu_backend.is_enabled():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def reset_model_parallel() -> None:
    """Tear down megatron's groups but keep torch.distributed, so the next `initialize` can
    build another layout in the same processes (tests comparing layouts on one checkpoint)."""
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()


def shutdown() -> None:
    if parallel_state.model_parallel_is_initialized():
        parallel_state.destroy_model_parallel()
    if dist.is_initialized():
        dist.destroy_process_group()


# Small read-only views of megatron's grid, so callers need not import parallel_state.
def tensor_rank() -> int:
    return parallel_state.get_tensor_model_parallel_rank()


def tensor_group():
    return parallel_state.get_tensor_model_parallel_group()


def pipeline_group():
    return parallel_state.get_pipeline_model_parallel_group()


# The groups a GPTModel's forward and `mcore.generate` use. Duplicates of these,
# over the same ranks, let a second model run collectives that can never be
# matched with the training model's (a gloo group pairs messages by posting order).
MODEL_GROUPS = ("tp", "pp", "cp", "tp_cp", "mp", "embd", "pos_embd")


def model_groups() -> ProcessGroupCollection:
    """megatron's own groups for one model (what GPTModel uses when given none)."""
    return ProcessGroupCollection.use_mpu_process_groups(list(MODEL_GROUPS))


def duplicate_model_groups() -> ProcessGroupCollection:
    """New process groups over the same ranks as megatron's model groups.

    Collective over the whole world (every rank must call it, in the same order
    relative to other group creation): each rank's member list is all-gathered so
    every rank creates every group, as torch.distributed requires.
    """
    if not parallel_state.model_parallel_is_initialized():
        raise RuntimeError("duplicate_model_groups: call runtime.initialize first")
    current, me = model_groups(), dist.get_rank()
    fields = {}
    for name in MODEL_GROUPS:
        group = getattr(current, name)  # None where this rank is in no such group (embd off PP ends)
        mine = sorted(dist.get_process_group_ranks(group)) if group is not None else None
        everyone = [None] * dist.get_world_size()
        dist.all_gather_object(everyone, mine)
        fields[name] = None
        for ranks in sorted({tuple(r) for r in everyone if r is not None}):
            created = dist.new_group(list(ranks))
            if me in ranks:
                fields[name] = created
    return ProcessGroupCollection(**fields)
