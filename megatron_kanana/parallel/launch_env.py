"""Where this process sits in a job, read once from the launcher's environment.

    env = LaunchEnv.detect()      # torchrun, srun (one task per GPU), or a lone process

torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT; `srun python -m
megatron_kanana.cli train ...` sets SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID and the sbatch
script exports MASTER_ADDR (and MASTER_PORT, default 29500). This is the only place the
project reads those variables: everything else receives a LaunchEnv or the Runtime built
from it, and nothing writes them back into the environment.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional


@dataclasses.dataclass(frozen=True)
class LaunchEnv:
    launcher: str            # "torchrun", "slurm" (srun tasks) or "none" (a world of one)
    rank: int
    world_size: int
    local_rank: int
    master_addr: Optional[str] = None
    master_port: Optional[int] = None
    in_slurm_step: bool = False  # inside an srun step even without MASTER_ADDR: never spawn workers
    device_choice: str = "auto"  # KANANA_DEVICE: auto, cpu or cuda
    torchelastic: bool = False   # a torchrun (elastic agent) worker: its descendants must die with it

    @classmethod
    def detect(cls, environ: Optional[Mapping[str, str]] = None) -> "LaunchEnv":
        env = os.environ if environ is None else environ
        device = env.get("KANANA_DEVICE", "auto")
        elastic = "TORCHELASTIC_RUN_ID" in env
        in_slurm = "SLURM_PROCID" in env
        if "RANK" in env and "WORLD_SIZE" in env:
            return cls("torchrun", int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", "0")),
                       env.get("MASTER_ADDR"), _port(env.get("MASTER_PORT")), in_slurm, device, elastic)
        if in_slurm and "MASTER_ADDR" in env:
            return cls("slurm", int(env["SLURM_PROCID"]), int(env.get("SLURM_NTASKS", "1")),
                       int(env.get("SLURM_LOCALID", "0")), env["MASTER_ADDR"],
                       _port(env.get("MASTER_PORT")) or 29500, True, device)
        return cls("none", 0, 1, 0, in_slurm_step=in_slurm, device_choice=device)

    @property
    def under_launcher(self) -> bool:
        """Started by torchrun or srun: this process is one rank of the job, never a spawner."""
        return self.launcher != "none" or self.in_slurm_step


def _port(value: Optional[str]) -> Optional[int]:
    return int(value) if value else None
