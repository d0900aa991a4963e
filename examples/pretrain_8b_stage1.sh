#!/bin/bash
# Kanana 8B pre-training stage 1 (2.7T tokens) on 32 nodes × 8 H100.
#   mkdir -p logs && sbatch examples/pretrain_8b_stage1.sh [dotted.key=value ...]
#   DRY_RUN=1 bash examples/pretrain_8b_stage1.sh       # resolved config + srun line, no GPUs
# Env: RUN_DIR (default RUN_ROOT/kanana_8b_stage1), CONTAINER_IMAGE, ... (examples/slurm_common.sh).
# Submit it again (or chain: sbatch --dependency=singleton ...) to go on after the time limit:
# USR1 120 s before the end makes every rank save, and the next job resumes from RUN_DIR.
#SBATCH --job-name=kanana-8b-stage1
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

RUN_DIR=${RUN_DIR:-$RUN_ROOT/kanana_8b_stage1}
kanana_launch examples/pretrain/kanana_8b_stage1.yaml "run.output_dir=$RUN_DIR" "$@"
