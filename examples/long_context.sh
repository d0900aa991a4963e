#!/bin/bash
# Kanana Nano 2.1B long-context continued pre-training on 8 nodes × 8 H100, in one run: 8K -> 32K
# (long32k) then 128K with YaRN (long128k), from the 8K base (weights and Adam state);
# examples/long_context/kanana_nano_2.1b_long_context.yaml. TP 2 with sequence parallelism (the
# activations outside attention sharded along the sequence) × context parallelism 8 (attention
# over a 128K sample split across 8 GPUs) -> DP 4.
#   mkdir -p logs && BASE_DIR=runs/kanana_nano_2.1b_distill sbatch examples/long_context.sh
#   DRY_RUN=1 bash examples/long_context.sh              # resolved config + srun line, no GPUs
# Env: BASE_DIR (the 8K checkpoint run, default RUN_ROOT/kanana_nano_2.1b_distill), RUN_DIR
# (default RUN_ROOT/kanana_nano_2.1b_long_context), CONTAINER_IMAGE, ... (examples/slurm_common.sh).
# Submit it again to go on after the time limit (USR1 120 s before the end makes every rank
# save; the next job resumes from RUN_DIR, in whichever stage it stopped, with that stage's RoPE).
#SBATCH --job-name=kanana-nano-long-context
#SBATCH --nodes=8
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

RUN_DIR=${RUN_DIR:-$RUN_ROOT/kanana_nano_2.1b_long_context}
BASE_DIR=${BASE_DIR:-$RUN_ROOT/kanana_nano_2.1b_distill}
kanana_require_checkpoint "$BASE_DIR/checkpoints"
kanana_launch examples/long_context/kanana_nano_2.1b_long_context.yaml "run.output_dir=$RUN_DIR" \
    "checkpoint.load=$BASE_DIR/checkpoints" "$@"
