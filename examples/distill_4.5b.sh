#!/bin/bash
# Kanana 4.5B (pruned from the 8B), on 8 nodes × 8 H100: 300B tokens of stage-2
# data, distilled from the 8B (KL on the final logits; see the config's header).
#   mkdir -p logs && PRUNED_CKPT=runs/kanana_4.5b_pruned TEACHER_CKPT=runs/kanana_8b_stage2/checkpoints \
#       sbatch examples/distill_4.5b.sh
#   DRY_RUN=1 bash examples/distill_4.5b.sh        # resolved config + srun line, no GPUs
# Env: PRUNED_CKPT (default RUN_ROOT/kanana_4.5b_pruned), TEACHER_CKPT (default
# RUN_ROOT/kanana_8b_stage2/checkpoints), RUN_DIR (default
# RUN_ROOT/kanana_4.5b_distill), CONTAINER_IMAGE, ... (examples/slurm_common.sh).
#SBATCH --job-name=kanana-4.5b
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

RUN_DIR=${RUN_DIR:-$RUN_ROOT/kanana_4.5b_distill}
PRUNED_CKPT=${PRUNED_CKPT:-$RUN_ROOT/kanana_4.5b_pruned}
TEACHER_CKPT=${TEACHER_CKPT:-$RUN_ROOT/kanana_8b_stage2/checkpoints}
kanana_require_checkpoint "$PRUNED_CKPT"
kanana_require_checkpoint "$TEACHER_CKPT"
kanana_launch examples/pretrain/kanana_4.5b_distill.yaml "run.output_dir=$RUN_DIR" \
    "checkpoint.load=$PRUNED_CKPT" "distill.teacher=$TEACHER_CKPT" "$@"
