"""Worker for the parity tests: one fp32 step of a tiny Kanana model at some layout.

    torchrun --nproc-per-node N tests/distributed/parity_worker.py --tp 2 --pp 1 --workdir DIR --tag tp2

With `--tag ref` (one process) it saves the initial weights and the gradients of
step 1 as dist checkpoints. Any other tag loads those initial weights (resharded
to its layout), runs the same global batch, and compares loss, gradients and
the loss after one optimizer step with the reference. Results go to
DIR/<tag>.json.

The step is the trainer's own: the production LM forward step (training/fused_lm_step.py
picks the fused or unfused LM head, `--lm-head`) with its vocab-parallel cross-entropy
and z-loss, through the same megatron schedule, DDP and distributed optimizer.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime, step
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.training.fused_lm_step import select_forward_step
from megatron_kanana.training.kernels_config import KernelsConfig

GLOBAL_BATCH, SEQ = 4, 32
Z_LOSS = 1e-3  # large enough that a z-loss bug moves the gradients past the tolerance


def global_batch(vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (GLOBAL_BATCH, SEQ + 1), generator=g)
    position_ids = torch.arange(SEQ).unsqueeze(0)
    return [{"tokens": row[None, :-1], "labels": row[None, 1:], "loss_mask": torch.ones(1, SEQ),
             "position_ids": position_ids} for row in data]


def local_state(chunks) -> dict:
    out = {}
    for i, chunk in enumerate(chunks):
        for k, v in chunk.module.state_dict().items():
            if isinstance(v, torch.Tensor) and "_extra_state" not in k:
                out[f"{i}.{k}"] = v.detach().clone()
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--vpp", type=int, default=None)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--workdir", required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--lm-head", choices=("fused", "unfused"), default="unfused")
    args = p.parse_args()
    workdir = Path(args.workdir)
    shape = get_preset(args.preset)
    parallel = ParallelConfig(tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp,
                              virtual_pipeline_model_parallel_size=args.vpp)
    rt = runtime.initialize(parallel, shape, seed=1234)
    config = mcore_model.transformer_config(shape, parallel, rt.device)
    kernels = KernelsConfig(lm_head_loss=args.lm_head)
    forward_step = select_forward_step(kernels, Z_LOSS)
    chunks = step.wrap_ddp(mcore_model.build_model(shape, config, kernels=kernels), use_distributed_optimizer=True)
    optimizer = step.build_optimizer(chunks, step.OptimizerSettings(lr=1e-3, weight_decay=0.1))
    reference = args.tag == "ref"
    if reference:
        checkpoint.save_model(chunks, workdir / "init")
    else:
        checkpoint.load_model(chunks, workdir / "init")

    dp, dp_rank = rt.layout.data, rt.data_rank
    per_rank = GLOBAL_BATCH // dp
    micro_batches = global_batch(shape.vocab_size)[dp_rank * per_rank:(dp_rank + 1) * per_rank]
    grads = {}

    def snapshot_grads():
        with checkpoint.gradients_as_weights(chunks):
            grads.update(local_state(chunks))
            if reference:
                checkpoint.save_model(chunks, workdir / "grads_ref")

    first = step.train_step(chunks, optimizer, forward_step, micro_batches, 1, SEQ, extra_keys=("z loss",),
                            force_all_reduce=True, before_optimizer=snapshot_grads)
    second = step.train_step(chunks, optimizer, forward_step, micro_batches, 1, SEQ)
    result = {"loss1": first.loss, "z_loss1": first.extra["z loss"], "loss2": second.loss, "grad_norm": first.grad_norm,
              "world_size": rt.world_size, "dp": dp}
    if not reference:
        checkpoint.load_model(chunks, workdir / "grads_ref")  # reference grads, resharded to this layout
        theirs = local_state(chunks)
        diffs = torch.tensor([(grads[k] - theirs[k]).abs().max().item() for k in sorted(grads)] or [0.0])
        scale = max(v.abs().max().item() for v in theirs.values())
        worst = torch.tensor([diffs.max().item() / scale])
        torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
        result.update(max_grad_rel_diff=worst.item(), num_grad_tensors_compared=len(grads))
    if rt.rank == 0:
        (workdir / f"{args.tag}.json").write_text(json.dumps(result))
    runtime.shutdown()


if __name__ == "__main__":
    main()
