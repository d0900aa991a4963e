#!/bin/bash
# Depth up-scaling Kanana 8B -> Essence 9.8B, then the two 100B-token continuations.
# SLURM sketch: 8 nodes x 8 GPUs; edit paths and the account to your cluster.
# The conversion steps run on one node's CPUs and stream (peak RSS ~20% of the checkpoint).
#SBATCH --job-name=essence-9.8b
#SBATCH --nodes=8
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
set -euo pipefail

HF_8B=${HF_8B:-/models/kanana-8b-hf}
CKPT=${CKPT:-ckpt}

if [ ! -e "$CKPT/essence-9.8b-dus/latest" ]; then
  srun --nodes=1 --ntasks=1 kanana convert --from hf --to mcore --input "$HF_8B" --output "$CKPT/kanana-8b" --tp 4 --pp 2
  srun --nodes=1 --ntasks=1 kanana upscale-depth --input "$CKPT/kanana-8b" --output "$CKPT/essence-9.8b-dus" \
       --layers essence-32-to-40 --tp 4 --pp 2 --vpp 5
fi

MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)
for stage in 1 2; do
  # `kanana train` is the trainer's entry point (its config schema is being finalised).
  srun torchrun --nnodes="$SLURM_NNODES" --nproc-per-node=8 --rdzv-backend=c10d \
       --rdzv-endpoint="$MASTER_ADDR:29500" -m megatron_kanana.cli train \
       --config "examples/upscale/essence_9.8b_stage${stage}.yaml"
done
