#!/bin/bash
# Kanana Essence 9.8B: 100B + 100B tokens of continued pre-training after depth up-scaling,
# on 16 nodes × 8 H100, from the model-only checkpoint `kanana upscale-depth` writes.
#   mkdir -p logs && UPSCALED_CKPT=runs/kanana_essence_9.8b_upscaled sbatch examples/pretrain_9.8b_dus.sh
#   DRY_RUN=1 bash examples/pretrain_9.8b_dus.sh        # resolved config + srun line, no GPUs
# Env: UPSCALED_CKPT (default RUN_ROOT/kanana_essence_9.8b_upscaled), RUN_DIR (default
# RUN_ROOT/kanana_essence_9.8b_dus), CONTAINER_IMAGE, ... (examples/slurm_common.sh).
#SBATCH --job-name=kanana-9.8b-dus
#SBATCH --nodes=16
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out

# sbatch runs a copy of this file from a spool directory: find the checkout via the submit dir.
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -f $_here/slurm_common.sh ]] && REPO_DIR=${REPO_DIR:-$(dirname "$_here")}
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
source "$REPO_DIR/examples/slurm_common.sh" || { echo "set REPO_DIR to the megatron_kanana checkout" >&2; exit 2; }

RUN_DIR=${RUN_DIR:-$RUN_ROOT/kanana_essence_9.8b_dus}
UPSCALED_CKPT=${UPSCALED_CKPT:-$RUN_ROOT/kanana_essence_9.8b_upscaled}
kanana_require_checkpoint "$UPSCALED_CKPT"
kanana_launch examples/pretrain/kanana_essence_9.8b_dus.yaml "run.output_dir=$RUN_DIR" \
    "checkpoint.load=$UPSCALED_CKPT" "$@"
