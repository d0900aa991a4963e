# Shared launch logic of the SLURM scripts in examples/ (pretrain_*.sh, distill_*.sh).
# Sourced, not run: a job script sets its #SBATCH lines, sources this file and calls
#     kanana_launch CONFIG [dotted.key=value ...]
# which starts one training process per GPU with srun (the trainer maps SLURM_PROCID /
# SLURM_NTASKS / SLURM_LOCALID to RANK / WORLD_SIZE / LOCAL_RANK itself), so the
# preemption signal of `#SBATCH --signal=USR1@120` reaches every process and each one
# saves a checkpoint before the job ends. A requeued or resubmitted job resumes from
# RUN_DIR/checkpoints/latest.
#
# Environment (all optional):
#   DRY_RUN=1        print the resolved config (`kanana train CONFIG --dry-run`) and the srun
#                    line instead of launching; needs no SLURM allocation and no GPU
#   RUN_ROOT         parent of the run directories (default: REPO_DIR/runs); must be on a
#                    file system every node sees
#   RUN_DIR          this run's directory (default: RUN_ROOT/<run name>, set by the job script)
#   CONTAINER_IMAGE  run inside this image with pyxis/enroot (srun --container-image), e.g.
#                    the image built from the repo's Dockerfile; empty = the host's python
#   CONTAINER_MOUNTS srun --container-mounts (default: RUN_ROOT and DATA_ROOT at the same paths)
#   CONTAINER_REPO   the repo inside the image (default: /workspace/megatron_kanana, the Dockerfile's)
#   DATA_ROOT        data/tokenizer directory mounted into the container (default: /data)
#   PYTHON           interpreter outside a container (default: REPO_DIR/.venv/bin/python, else python3)
#   MASTER_PORT      rendezvous port (default: 20000 + job id mod 20000, so jobs sharing a node differ)

set -euo pipefail

: "${REPO_DIR:?slurm_common.sh: the job script must set REPO_DIR before sourcing this file}"
RUN_ROOT=${RUN_ROOT:-$REPO_DIR/runs}
DATA_ROOT=${DATA_ROOT:-/data}
CONTAINER_IMAGE=${CONTAINER_IMAGE:-}
CONTAINER_REPO=${CONTAINER_REPO:-/workspace/megatron_kanana}
CONTAINER_MOUNTS=${CONTAINER_MOUNTS:-$RUN_ROOT:$RUN_ROOT,$DATA_ROOT:$DATA_ROOT}
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x $REPO_DIR/.venv/bin/python ]]; then PYTHON=$REPO_DIR/.venv/bin/python; else PYTHON=python3; fi
fi

# Rendezvous for torch.distributed: the first node of the allocation.
_kanana_rendezvous() {
    if [[ -n ${SLURM_JOB_NODELIST:-} ]]; then
        export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
        if [[ -z $MASTER_ADDR ]]; then
            echo "kanana_launch: scontrol gave no host for SLURM_JOB_NODELIST=$SLURM_JOB_NODELIST" >&2
            return 2
        fi
    elif [[ ${DRY_RUN:-0} == 1 ]]; then
        export MASTER_ADDR=${MASTER_ADDR:-localhost}   # a dry run needs no allocation
    else
        echo "kanana_launch: not inside a SLURM allocation (no SLURM_JOB_NODELIST): submit with sbatch," \
             "or set DRY_RUN=1 to print the config and command" >&2
        return 2
    fi
    export MASTER_PORT=${MASTER_PORT:-$((20000 + ${SLURM_JOB_ID:-0} % 20000))}
}

# The srun command line (without the trainer's arguments) into the array KANANA_SRUN.
_kanana_srun_command() {
    KANANA_SRUN=(srun --kill-on-bad-exit=1)
    if [[ -n $CONTAINER_IMAGE ]]; then
        KANANA_SRUN+=(--container-image="$CONTAINER_IMAGE" --container-mounts="$CONTAINER_MOUNTS"
                      --container-workdir="$CONTAINER_REPO" --no-container-mount-home python)
    else
        KANANA_SRUN+=(--chdir="$REPO_DIR" "$PYTHON")
    fi
}

# kanana_require_checkpoint PATH: before a fresh run (no RUN_DIR/checkpoints/latest yet) that
# starts from `checkpoint.load=PATH`, fail in seconds rather than after the whole allocation
# has started. PATH: a checkpoint (has kanana.json) or a checkpoint root (has `latest`).
kanana_require_checkpoint() {
    [[ ${DRY_RUN:-0} == 1 || -f ${RUN_DIR:?}/checkpoints/latest ]] && return 0
    if [[ ! -f $1/kanana.json && ! -f $1/latest ]]; then
        echo "kanana_launch: no checkpoint at $1 (neither kanana.json nor latest) to start from" >&2
        return 2
    fi
}

# kanana_launch CONFIG [dotted.key=value ...]: CONFIG relative to the repo root (the same
# path inside the container). Overrides go to `kanana train` as given.
kanana_launch() {
    local config=$1
    shift
    if [[ ! -f $REPO_DIR/$config ]]; then
        echo "kanana_launch: config $REPO_DIR/$config not found" >&2
        return 2
    fi
    _kanana_rendezvous
    # Megatron's tensor/sequence-parallel communication overlaps compute only when the GPU
    # runs kernels in launch order, i.e. with one hardware queue.
    export CUDA_DEVICE_MAX_CONNECTIONS=1
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
    export PYTHONUNBUFFERED=1
    if [[ -z $CONTAINER_IMAGE ]]; then
        # Run from the checkout even where the package is not pip-installed.
        export PYTHONPATH=$REPO_DIR:$REPO_DIR/kernels${PYTHONPATH:+:$PYTHONPATH}
    fi
    _kanana_srun_command
    local train=(-m megatron_kanana.cli train "$config" "$@")
    if [[ ${DRY_RUN:-0} == 1 ]]; then
        echo "# DRY_RUN=1: the resolved config (kanana train --dry-run), then the command this job runs"
        (cd "$REPO_DIR" && "$PYTHON" "${train[@]}" --dry-run)
        echo "# under SLURM (${SLURM_JOB_NUM_NODES:-the #SBATCH --nodes} nodes, MASTER_ADDR=$MASTER_ADDR, MASTER_PORT=$MASTER_PORT):"
        echo "srun-command: ${KANANA_SRUN[*]} ${train[*]}"
        return 0
    fi
    echo "kanana_launch: job ${SLURM_JOB_ID:-?} on ${SLURM_JOB_NUM_NODES:-?} nodes, restart count" \
         "${SLURM_RESTART_COUNT:-0}, MASTER_ADDR=$MASTER_ADDR:$MASTER_PORT"
    echo "kanana_launch: ${KANANA_SRUN[*]} ${train[*]}"
    "${KANANA_SRUN[@]}" "${train[@]}"
}
