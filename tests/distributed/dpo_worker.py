"""Worker for the vocab-parallel DPO test: at TP=2 each rank holds half of the vocabulary of
fixed policy/reference logits; the sequence log-probs, the DPO loss (with the SFT mix) and
the gradient on the policy logits must equal the single-process computation on the full
vocabulary (log_softmax + gather, the DPO formula written out).

    torchrun --nproc-per-node 2 tests/distributed/dpo_worker.py --out DIR
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.nn.functional as F

from megatron_kanana.mcore import runtime
from megatron_kanana.mcore.loss import vocab_parallel_sequence_logprobs
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.posttrain.dpo_loss import dpo_loss

ROWS, S, V, BETA, SFT_WEIGHT = 4, 6, 64, 0.3, 0.5


def full_vocab(policy: torch.Tensor, reference: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor):
    """(loss, policy log-probs): the plain single-device computation."""
    def seq_logps(logits):
        return (F.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1) * mask).sum(-1)
    pi, ref = seq_logps(policy), seq_logps(reference)
    h = (pi[0::2] - ref[0::2]) - (pi[1::2] - ref[1::2])
    nll = -pi[0::2].sum() / mask[0::2].sum()
    return -F.logsigmoid(BETA * h).mean() + SFT_WEIGHT * nll, pi


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    rt = runtime.initialize(ParallelConfig(tensor_model_parallel_size=2), get_preset("tiny"))
    g = torch.Generator().manual_seed(0)
    policy = (3 * torch.randn(ROWS, S, V, generator=g)).requires_grad_(True)
    reference = 3 * torch.randn(ROWS, S, V, generator=g)
    labels = torch.randint(0, V, (ROWS, S), generator=g)
    mask = (torch.rand(ROWS, S, generator=g) > 0.3).float()
    expected, expected_logps = full_vocab(policy, reference, labels, mask)
    expected.backward()

    half = V // 2
    sl = slice(rt.rank * half, (rt.rank + 1) * half)
    local = policy.detach()[..., sl].clone().requires_grad_(True)
    logps = vocab_parallel_sequence_logprobs(local, labels, mask)
    with torch.no_grad():
        ref_logps = vocab_parallel_sequence_logprobs(reference[..., sl], labels, mask)
    got, stats = dpo_loss(logps, ref_logps, mask.sum(-1), BETA, sft_weight=SFT_WEIGHT)
    got.backward()
    result = {"loss": got.item(), "expected": expected.item(),
              "logps_error": (logps.detach() - expected_logps.detach()).abs().max().item(),
              "logps_scale": expected_logps.abs().max().item(),
              "grad_error": (local.grad - policy.grad[..., sl]).abs().max().item(),
              "grad_scale": policy.grad.abs().max().item()}
    Path(args.out, f"rank{rt.rank}.json").write_text(json.dumps(result))
    runtime.shutdown()


if __name__ == "__main__":
    main()
