"""Worker for the kernels-wiring tests: one fp32 step with Kanana's kernels wired vs megatron's modules.

    torchrun --nproc-per-node N tests/distributed/kernels_wiring_worker.py --tp 2 --workdir DIR --tag tp2

Builds the model twice in one process group from the same weights: "off"
(megatron-core's RMSNorm, MLP activation, output layer -> logits -> loss) and
"on" (kanana_kernels RMSNorm and SwiGLU with the PyTorch references, fused LM
head with the chunked PyTorch algorithm). The off model saves its initial
weights as a dist checkpoint and the on model loads them (strict); the on model
saves, the off model loads that back (strict). Then both run the same
micro-batches through megatron's schedule and the worker compares losses and
every gradient element. While the on model runs, a dispatch mode records the
most rows of any tensor shaped like logits [rows, V/tp], to show the fused
head never holds [tokens, V/tp] logits. Results go to DIR/<tag>.json (rank 0).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode

from megatron_kanana.mcore import checkpoint, model as mcore_model, runtime, step
from megatron_kanana.mcore.kernel_layers import KernelRMSNorm, KernelSwiGLUMLP
from megatron_kanana.mcore.fused_head import FusedLMHeadOutputLayer
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.training import fused_lm_step, lm_step
from megatron_kanana.training.kernels_config import KernelsConfig

MICRO_BATCHES, SEQ, CHUNK = 2, 32, 16
Z_LOSS = 1e-3  # larger than Kanana's 5e-6 so a wrong z-loss gradient shows above the tolerance
ON = KernelsConfig(rms_norm="torch", swiglu="torch", lm_head_loss="fused", lm_head_impl="chunked",
                   lm_head_chunk_size=CHUNK)


class LogitRows(TorchDispatchMode):
    """Most rows (tokens) of any op output shaped like logits [..., V/tp]; the output
    weight's transpose [h, V/tp] is the one other tensor with that last dim."""

    def __init__(self, vocab_local: int, hidden: int):
        super().__init__()
        self.vocab_local, self.hidden, self.most = vocab_local, hidden, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[-1] == self.vocab_local \
                    and tuple(t.shape) != (self.hidden, self.vocab_local):
                self.most = max(self.most, t.numel() // self.vocab_local)
        return out


def batches(vocab: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (MICRO_BATCHES, SEQ + 1), generator=g)
    mask = torch.ones(1, SEQ)
    mask[0, :3] = 0  # a masked prefix: masked tokens must contribute nothing in both paths
    return [{"tokens": row[None, :-1], "labels": row[None, 1:], "loss_mask": mask,
             "position_ids": torch.arange(SEQ).unsqueeze(0)} for row in data]


def sharded_keys(chunks) -> list[str]:
    keys = set()
    for state in checkpoint.model_sharded_state_dict(chunks).values():
        keys.update(v.key for v in state.values() if hasattr(v, "key"))
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, sorted(keys))
    return sorted(set().union(*gathered))


def step_grads(chunks, forward_step, micro):
    for c in chunks:
        c.zero_grad_buffer()
    dicts = step.run_schedule(chunks, forward_step, micro, 1, SEQ, force_all_reduce=True)
    losses = {k: step.average_losses(dicts, k) for k in ("lm loss", "z loss")}
    with checkpoint.gradients_as_weights(chunks):
        grads = {f"{i}.{k}": v.detach().clone() for i, c in enumerate(chunks)
                 for k, v in c.module.state_dict().items() if isinstance(v, torch.Tensor) and "_extra" not in k}
    return losses, grads


def module_census(chunks) -> dict:
    """Kernel modules per kind, summed over pipeline stages (TP rank 0 of each)."""
    mods = [m for c in chunks for m in c.modules()]
    kinds = (KernelRMSNorm, KernelSwiGLUMLP, FusedLMHeadOutputLayer)
    counts = torch.tensor([sum(isinstance(m, k) for m in mods) for k in kinds] if runtime.tensor_rank() == 0
                          else [0] * len(kinds))
    dist.all_reduce(counts)
    return {k.__name__: int(n) for k, n in zip(kinds, counts)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--tp", type=int, default=1)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--workdir", required=True)
    p.add_argument("--tag", required=True)
    args = p.parse_args()
    workdir = Path(args.workdir) / args.tag
    shape = get_preset(args.preset)
    parallel = ParallelConfig(tensor_model_parallel_size=args.tp, pipeline_model_parallel_size=args.pp)
    rt = runtime.initialize(parallel, shape, seed=1234)
    # one TransformerConfig each: build_optimizer stores the schedule's grad hooks on it
    off = step.wrap_ddp(mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device)))
    on = step.wrap_ddp(mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device),
                                               kernels=ON))
    for chunks in (off, on):  # the schedule's gradient reduction hooks (no optimizer step is taken)
        step.build_optimizer(chunks, step.OptimizerSettings(lr=1e-3))
    checkpoint.save_model(off, workdir / "init_off")
    checkpoint.load_model(on, workdir / "init_off", strict=True)     # off -> on
    checkpoint.save_model(on, workdir / "init_on")
    checkpoint.load_model(off, workdir / "init_on", strict=True)     # on -> off
    micro = batches(shape.vocab_size)

    losses_off, grads_off = step_grads(off, lm_step.make_forward_step(Z_LOSS), micro)
    vocab_local = shape.vocab_size // args.tp
    probe_off, probe_on = LogitRows(vocab_local, shape.hidden_size), LogitRows(vocab_local, shape.hidden_size)
    with probe_off:
        step_grads(off, lm_step.make_forward_step(Z_LOSS), micro)
    with probe_on:
        losses_on, grads_on = step_grads(on, fused_lm_step.select_forward_step(ON, Z_LOSS), micro)

    assert sorted(grads_on) == sorted(grads_off), "local state dict keys differ"
    scale = max(g.abs().max().item() for g in grads_off.values())
    worst = torch.tensor([max((grads_on[k] - grads_off[k]).abs().max().item() for k in grads_off) / scale])
    dist.all_reduce(worst, op=dist.ReduceOp.MAX)
    logit_rows = torch.tensor([probe_off.most, probe_on.most])
    dist.all_reduce(logit_rows, op=dist.ReduceOp.MAX)
    result = {"losses_off": losses_off, "losses_on": losses_on, "max_grad_rel_diff": worst.item(),
              "num_grad_tensors": len(grads_off), "keys_off": sharded_keys(off), "keys_on": sharded_keys(on),
              "logit_rows_off": int(logit_rows[0]), "logit_rows_on": int(logit_rows[1]),
              "tokens_per_micro_batch": SEQ, "chunk": CHUNK, "vocab_local": vocab_local,
              "census_on": module_census(on), "census_off": module_census(off), "world_size": rt.world_size}
    if rt.rank == 0:
        (Path(args.workdir) / f"{args.tag}.json").write_text(json.dumps(result))
    runtime.shutdown()


if __name__ == "__main__":
    main()
