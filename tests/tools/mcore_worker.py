"""Worker for the converter / depth up-scaling tests: runs a list of tasks on megatron-core.

    torchrun --nproc-per-node 2 tests/tools/mcore_worker.py TASKS.json

TASKS.json: {"tasks": [{"kind": "logits", "ckpt": DIR, "tp": 2, "pp": 1, "out": FILE}, ...]}
- logits: build the model at the layout, load the checkpoint strictly, run a
  forward-only schedule on tokens [0..SEQ) of a fixed batch, gather the
  vocab-parallel logits; rank 0 saves them ([batch, seq, vocab]) to `out`.
- train: load at the layout into DDP + distributed optimizer, take one training
  step; rank 0 saves {"loss", "grad_norm", "update_successful"} to `out`.
Tasks run in one process group; megatron's groups are rebuilt per layout,
so several checks share the start-up cost.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from megatron_kanana.checkpointing import layout
from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime, step
from megatron_kanana.models.shape import ModelShape
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.training.lm_step import make_forward_step

from tests.tools.tokens import BATCH, SEQ, tokens_for


def _setup(task: dict):
    directory = layout.resolve(Path(task["ckpt"]))
    shape = ModelShape.from_dict(layout.read_meta(directory)["model"])
    parallel = ParallelConfig(tensor_model_parallel_size=task["tp"], pipeline_model_parallel_size=task["pp"])
    runtime.reset_model_parallel()
    rt = runtime.initialize(parallel, shape, seed=1234)
    config = mcore_model.transformer_config(shape, parallel, rt.device)
    return directory, shape, rt, config


def _gathered_logits(logits: torch.Tensor) -> torch.Tensor:
    group = runtime.tensor_group()
    parts = [torch.empty_like(logits) for _ in range(dist.get_world_size(group))]
    dist.all_gather(parts, logits.contiguous(), group=group)
    return torch.cat(parts, dim=-1)


def logits_task(task: dict) -> None:
    directory, shape, rt, config = _setup(task)
    chunks = mcore_model.build_model(shape, config)
    checkpoint.load_model(chunks, directory, strict=True)
    for c in chunks:
        c.eval()
    data = tokens_for(shape.vocab_size)[:, :-1]
    batch = {"tokens": data, "position_ids": torch.arange(SEQ).expand(BATCH, SEQ)}

    def forward_step(batch_iter, model):
        b = next(batch_iter)
        output = model(b["tokens"], b["position_ids"], None)
        return output, lambda out: (out.sum() * 0, {"logits": _gathered_logits(out.detach())})

    with torch.no_grad():
        results = step.run_schedule(chunks, forward_step, [batch], BATCH, SEQ, forward_only=True)
    if results and runtime.tensor_rank() == 0 and rt.data_rank == 0:
        torch.save(results[0]["logits"], task["out"])


def train_task(task: dict) -> None:
    directory, shape, rt, config = _setup(task)
    chunks = step.wrap_ddp(mcore_model.build_model(shape, config), use_distributed_optimizer=True)
    optimizer = step.build_optimizer(chunks, step.OptimizerSettings(lr=1e-4))
    checkpoint.load_model(chunks, directory, strict=True)
    data = tokens_for(shape.vocab_size)
    micro = [{"tokens": row[None, :-1], "labels": row[None, 1:], "loss_mask": torch.ones(1, SEQ),
              "position_ids": torch.arange(SEQ)[None]} for row in data]
    result = step.train_step(chunks, optimizer, make_forward_step(z_loss_coef=0.0), micro, 1, SEQ)
    if rt.rank == 0:
        Path(task["out"]).write_text(json.dumps({"loss": result.loss, "grad_norm": result.grad_norm,
                                                 "update_successful": result.update_successful}))


def main() -> None:
    tasks = json.loads(Path(sys.argv[1]).read_text())["tasks"]
    for task in tasks:
        {"logits": logits_task, "train": train_task}[task["kind"]](task)
        dist.barrier()
    runtime.shutdown()


if __name__ == "__main__":
    main()
