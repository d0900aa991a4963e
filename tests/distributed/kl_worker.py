"""Worker for the vocab-parallel KL test: at TP=2 each rank holds half of the
vocabulary of random student/teacher logits; the KL and the student gradient
must equal torch.nn.functional.kl_div on the full (gathered) logits.

    torchrun --nproc-per-node 2 tests/distributed/kl_worker.py --out DIR
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from megatron_kanana.mcore import runtime
from megatron_kanana.mcore.loss import vocab_parallel_kl_div
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig

B, S, V, T = 2, 5, 64, 2.0


def reference(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    per_token = F.kl_div(F.log_softmax(student / T, -1), F.log_softmax(teacher / T, -1),
                         reduction="none", log_target=True).sum(-1)
    return T * T * (per_token * mask).sum() / mask.sum()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rt = runtime.initialize(ParallelConfig(tensor_model_parallel_size=2), get_preset("tiny"))
    g = torch.Generator().manual_seed(0)
    student = (3 * torch.randn(B, S, V, generator=g)).requires_grad_(True)
    teacher = 3 * torch.randn(B, S, V, generator=g)
    mask = (torch.rand(B, S, generator=g) > 0.3).float()

    expected = reference(student, teacher, mask)
    expected.backward()

    half = V // 2
    sl = slice(rt.rank * half, (rt.rank + 1) * half)
    local = student.detach()[..., sl].clone().requires_grad_(True)
    got = vocab_parallel_kl_div(local, teacher[..., sl], mask, temperature=T)
    got.backward()
    grad_error = (local.grad - student.grad[..., sl]).abs().max().item()
    result = {"kl": got.item(), "expected": expected.item(), "grad_error": grad_error,
              "grad_scale": student.grad.abs().max().item()}
    Path(args.out, f"rank{rt.rank}.json").write_text(json.dumps(result))
    runtime.shutdown()


if __name__ == "__main__":
    main()
