#!/bin/bash
# Kanana instruct post-training on 1 node × 8 H100, one stage per job (arXiv 2502.18934 §3–4):
#   SFT → reward model → offline DPO → online DPO, then export to Hugging Face format.
#   mkdir -p logs
#   STAGE=sft        BASE_CKPT=runs/kanana_nano_2.1b_distill/checkpoints sbatch examples/posttrain.sh
#   STAGE=reward     sbatch examples/posttrain.sh     # from the SFT model
#   STAGE=dpo        sbatch examples/posttrain.sh     # from the SFT model, which is also the reference
#   STAGE=online_dpo sbatch examples/posttrain.sh     # from the DPO model, scored by the reward model
#   kanana convert --from mcore --to hf --input runs/kanana_nano_2.1b_online_dpo/checkpoints \
#       --output hf/kanana-nano-2.1b-instruct
#   DRY_RUN=1 STAGE=dpo bash examples/posttrain.sh   # resolved config + srun line, no GPUs
# Env: STAGE (sft | reward | dpo | online_dpo: examples/posttrain/STAGE.yaml), SIZE (nano:
# kanana-nano-2.1b at TP=1, the configs' shape; essence: kanana-essence-9.8b at TP=4), BASE_CKPT (SFT's starting point, default
# RUN_ROOT/kanana_<size>_base/checkpoints), RUN_ROOT, CONTAINER_IMAGE, ... (slurm_common.sh).
# Each stage reads the previous stages' run directories under RUN_ROOT.
#SBATCH --job-name=kanana-posttrain
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=12
#SBATCH --exclusive
#SBATCH --time=24:00:00
#SBATCH --signal=USR1@120
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=logs/%x-%j.out

_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[[ -f $_here/slurm_common.sh ]] && REPO_DIR=${REPO_DIR:-$(dirname "$_here")}
REPO_DIR=${REPO_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}
source "$REPO_DIR/examples/slurm_common.sh" || { echo "set REPO_DIR to the megatron_kanana checkout" >&2; exit 2; }

STAGE=${STAGE:?set STAGE to sft, reward, dpo or online_dpo}
SIZE=${SIZE:-nano}
case $SIZE in
    nano) NAME=kanana_nano_2.1b; SHAPE=() ;;
    # 9.8B: two 9.8B models (policy + frozen reference) per GPU group need TP=4 at 8k tokens
    essence) NAME=kanana_essence_9.8b
             SHAPE=("model={preset: kanana-essence-9.8b}" "parallel.tensor_model_parallel_size=4") ;;
    *) echo "SIZE must be nano or essence, got '$SIZE'" >&2; exit 2 ;;
esac
SFT=$RUN_ROOT/${NAME}_sft/checkpoints
case $STAGE in
    sft) FROM=${BASE_CKPT:-$RUN_ROOT/${NAME}_base/checkpoints}; EXTRA=() ;;
    reward) FROM=$SFT; EXTRA=() ;;
    dpo) FROM=$SFT; EXTRA=() ;;
    online_dpo) FROM=$RUN_ROOT/${NAME}_dpo/checkpoints
                kanana_require_checkpoint "$RUN_ROOT/${NAME}_rm/checkpoints"
                EXTRA=("online_dpo.reward_model=$RUN_ROOT/${NAME}_rm/checkpoints") ;;
    *) echo "STAGE must be sft, reward, dpo or online_dpo, got '$STAGE'" >&2; exit 2 ;;
esac
RUN_DIR=$RUN_ROOT/${NAME}_${STAGE/reward/rm}
kanana_require_checkpoint "$FROM"
kanana_launch "examples/posttrain/$STAGE.yaml" "run.output_dir=$RUN_DIR" "checkpoint.load=$FROM" \
    "${SHAPE[@]}" "${EXTRA[@]}" "$@"
