#!/bin/bash
# Kanana 8B pre-training stage 2 (300B high-quality tokens) on 32 nodes × 8 H100, continuing
# the stage-1 run (its weights, Adam state and DeepSeek LR schedule).
#   mkdir -p logs && STAGE1_DIR=runs/kanana_8b_stage1 sbatch examples/pretrain_8b_stage2.sh
#   DRY_RUN=1 bash examples/pretrain_8b_stage2.sh       # resolved config + srun line, no GPUs
# Env: STAGE1_DIR (default RUN_ROOT/kanana_8b_stage1), RUN_DIR (default
# RUN_ROOT/kanana_8b_stage2), CONTAINER_IMAGE, ... (examples/slurm_common.sh).
#SBATCH --job-name=kanana-8b-stage2
#SBATCH --nodes=32
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

RUN_DIR=${RUN_DIR:-$RUN_ROOT/kanana_8b_stage2}
STAGE1_DIR=${STAGE1_DIR:-$RUN_ROOT/kanana_8b_stage1}
kanana_require_checkpoint "$STAGE1_DIR/checkpoints"
kanana_launch examples/pretrain/kanana_8b_stage2.yaml "run.output_dir=$RUN_DIR" \
    "checkpoint.load=$STAGE1_DIR/checkpoints" "$@"
