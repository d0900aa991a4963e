"""The launch environment is read once, from torchrun's or SLURM's variables."""
from megatron_kanana.parallel.launch_env import LaunchEnv


def test_torchrun():
    env = LaunchEnv.detect({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "MASTER_ADDR": "n0",
                            "MASTER_PORT": "1234"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank, env.master_port) == ("torchrun", 3, 4, 1, 1234)
    assert env.under_launcher


def test_srun_tasks_without_torchrun():
    env = LaunchEnv.detect({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "MASTER_ADDR": "n0"})
    assert (env.launcher, env.rank, env.world_size, env.local_rank) == ("slurm", 5, 8, 1)
    assert env.master_port == 29500  # the sbatch scripts' default


def test_lone_process_and_an_srun_step_without_rendezvous():
    alone = LaunchEnv.detect({})
    assert (alone.launcher, alone.rank, alone.world_size, alone.under_launcher) == ("none", 0, 1, False)
    in_step = LaunchEnv.detect({"SLURM_PROCID": "0"})  # inside srun but no MASTER_ADDR: a world of one
    assert in_step.world_size == 1 and in_step.under_launcher  # ...that never spawns its own workers
    assert LaunchEnv.detect({"KANANA_DEVICE": "cpu"}).device_choice == "cpu"
