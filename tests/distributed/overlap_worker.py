"""Worker for the overlap and recompute equality tests: several configurations of a tiny
fp32 model in the same 4 processes, each compared bit for bit with its baseline.

    torchrun --nproc-per-node 4 tests/distributed/overlap_worker.py --out results.json

Per layout (DP=4, TP=2 × DP=2, PP=2 × DP=2) it trains 3 steps of 2 micro-batches per
DP rank from the same seed with: no overlap (the baseline), overlap_grad_reduce, and
overlap_grad_reduce + overlap_param_gather; at TP=2 × DP=2 and PP=2 × DP=2 also with
selective, full-uniform and full-block recomputation. Rank 0 writes, per configuration,
whether the losses, grad norms, step-1 gradients and final parameters equal the
baseline's exactly (torch.equal on every rank).

Overlap runs use a small bucket_size (several buckets per chunk, so there are collectives
to interleave with the backward); megatron's DDP puts everything in one bucket when
overlap_grad_reduce is off, whatever bucket_size says. The distributed optimizer's shards
follow the buckets, so the grad norm is summed in another order (equal to ~1e-7, not
bit for bit) and the raw gradient buffers differ outside each rank's shard. So the overlap
runs train without clipping (clip_grad 0, so no step depends on the norm's last bit) and are
compared on losses and final parameters, which are then equal bit for bit.
"""
from __future__ import annotations

import argparse
import dataclasses
import json

import torch
import torch.distributed as dist

from megatron_kanana.mcore import model as mcore_model, runtime, step
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.training.fused_lm_step import select_forward_step
from megatron_kanana.training.kernels_config import KernelsConfig

SEQ, MICRO_PER_RANK, STEPS = 32, 2, 3
BUCKET = 6000  # elements: ~10 buckets for the tiny model, so overlap has buckets to interleave
LAYOUTS = {"dp4": dict(), "tp2dp2": dict(tensor_model_parallel_size=2),
           "pp2dp2": dict(pipeline_model_parallel_size=2)}
OVERLAP = {"overlap_grad": dict(overlap_grad_reduce=True),
           "overlap_grad_param": dict(overlap_grad_reduce=True, overlap_param_gather=True)}
RECOMPUTE = {"selective": dict(recompute_granularity="selective"),
             "full_uniform": dict(recompute_granularity="full", recompute_method="uniform", recompute_num_layers=1),
             "full_block": dict(recompute_granularity="full", recompute_method="block", recompute_num_layers=1)}


def batches(vocab: int, dp: int, dp_rank: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (dp * MICRO_PER_RANK, SEQ + 1), generator=g)
    rows = data[dp_rank * MICRO_PER_RANK:(dp_rank + 1) * MICRO_PER_RANK]
    return [{"tokens": r[None, :-1], "labels": r[None, 1:], "loss_mask": torch.ones(1, SEQ),
             "position_ids": torch.arange(SEQ)[None]} for r in rows]


def flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1).float().clone() for t in tensors])


def run(shape, parallel: ParallelConfig, ddp: step.DDPSettings, clip_grad: float = 1.0) -> dict:
    rt = runtime.initialize(parallel, shape, seed=1234)
    kernels = KernelsConfig(lm_head_loss="unfused")
    config = mcore_model.transformer_config(shape, parallel, rt.device)
    chunks = step.wrap_ddp(mcore_model.build_model(shape, config, kernels=kernels), ddp)
    optimizer = step.build_optimizer(chunks, step.OptimizerSettings(lr=1e-3, weight_decay=0.1,
                                                                      clip_grad=clip_grad))
    forward_step = select_forward_step(kernels, 1e-3)
    micro = batches(shape.vocab_size, rt.layout.data, rt.data_rank)
    grads = []
    losses, norms = [], []
    for i in range(STEPS):
        snap = (lambda: grads.append(flat(p.main_grad for c in chunks for p in c.parameters()))) if i == 0 else None
        result = step.train_step(chunks, optimizer, forward_step, micro, 1, SEQ, before_optimizer=snap)
        losses.append(result.loss)
        norms.append(result.grad_norm)
    step.sync_params(chunks)  # the overlapped gather of the last step is otherwise still pending
    out = {"losses": losses, "norms": norms, "grads": grads[0],
           "params": flat(p for c in chunks for p in c.parameters())}
    runtime.reset_model_parallel()
    return out


def equal_everywhere(a: dict, b: dict) -> dict:
    same = {"losses": a["losses"] == b["losses"], "norms": a["norms"] == b["norms"],
            "norms_close": all(x == y or abs(x - y) <= 1e-6 * abs(y) for x, y in zip(a["norms"], b["norms"])),
            "grads": torch.equal(a["grads"], b["grads"]), "params": torch.equal(a["params"], b["params"])}
    flags = torch.tensor([float(v) for v in same.values()])
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)  # equal on every rank's shard
    worst = torch.tensor([(a["grads"] - b["grads"]).abs().max().item(),
                          (a["params"] - b["params"]).abs().max().item()])
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    return {**{k: bool(f) for k, f in zip(same, flags.tolist())},
            "max_grad_diff": worst[0].item(), "max_param_diff": worst[1].item(),
            "loss_values": a["losses"], "baseline_loss_values": b["losses"]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    shape = get_preset("tiny")
    base_ddp = step.DDPSettings(bucket_size=BUCKET)  # a no-op without overlap (one bucket)
    results = {}
    for name, layout in LAYOUTS.items():
        parallel = ParallelConfig(**layout)
        unclipped = run(shape, parallel, base_ddp, clip_grad=0.0)
        for variant, fields in OVERLAP.items():
            got = run(shape, parallel, dataclasses.replace(base_ddp, **fields), clip_grad=0.0)
            results[f"{name}/{variant}"] = equal_everywhere(got, unclipped)
        baseline = run(shape, parallel, base_ddp)
        if name == "dp4":
            continue
        for variant, fields in RECOMPUTE.items():
            got = run(shape, ParallelConfig(**layout, **fields), base_ddp)
            results[f"{name}/{variant}"] = equal_everywhere(got, baseline)
    if dist.get_rank() == 0:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=1)
    runtime.shutdown()


if __name__ == "__main__":
    main()
