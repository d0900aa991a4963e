"""Worker for the reward-model test: score held-out preference pairs with a trained reward
checkpoint at TP=1, TP=2 and PP=2 in the same two processes (megatron's groups rebuilt per
layout), and write the scores with their Bradley–Terry loss and accuracy.

    torchrun --nproc-per-node 2 tests/distributed/reward_worker.py --checkpoint RUN/checkpoints \
        --pairs PREFIX --seq-length 64 --tokenizer tok.json --out DIR
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from megatron_kanana.checkpointing.layout import read_meta, resolve
from megatron_kanana.data.tokenizer import load_tokenizer
from megatron_kanana.mcore import runtime
from megatron_kanana.mcore.reward_head import build_reward_model, score
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.posttrain.preference import PreferenceDataset, collate_pairs
from megatron_kanana.posttrain.reward import check_reward_checkpoint
from megatron_kanana.posttrain.reward_step import bradley_terry

LAYOUTS = {"tp1": ParallelConfig(), "tp2": ParallelConfig(tensor_model_parallel_size=2),
           "pp2": ParallelConfig(pipeline_model_parallel_size=2)}


def main() -> None:
    p = argparse.ArgumentParser()
    for name in ("--checkpoint", "--pairs", "--tokenizer", "--out"):
        p.add_argument(name, required=True)
    p.add_argument("--seq-length", type=int, required=True)
    args = p.parse_args()
    directory = resolve(Path(args.checkpoint))
    check_reward_checkpoint(directory, load_tokenizer(args.tokenizer).fingerprint)
    shape = ModelShape.from_dict(read_meta(directory)["model"])
    ds = PreferenceDataset(args.pairs, args.seq_length)
    batch = collate_pairs([ds[i] for i in range(len(ds))])
    results = {}
    for name, parallel in LAYOUTS.items():
        rt = runtime.initialize(parallel, shape)
        chunks = build_reward_model(shape, parallel, rt.device, directory, seq_length=args.seq_length)
        rewards = score(chunks, batch["tokens"], batch["lengths"], micro_batch_size=2)
        loss, accuracy, _ = bradley_terry(rewards)
        results[name] = {"rewards": rewards.tolist(), "loss": loss.item(), "accuracy": accuracy.item()}
        runtime.reset_model_parallel()
    Path(args.out, f"rank{rt.rank}.json").write_text(json.dumps(results))
    runtime.shutdown()


if __name__ == "__main__":
    main()
