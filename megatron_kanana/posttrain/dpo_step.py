"""The DPO forward step handed to megatron's schedules: policy and frozen reference, one pass.

    forward_step = make_dpo_forward_step(beta=0.1)
    run_schedule(pair_stages(policy_chunks, reference_chunks), forward_step, batches, ...)

`batches` are `collate_pairs` dicts (rows 2j / 2j+1 = pair j's chosen / rejected;
tokens, labels, loss_mask, position_ids [2b, s]); any iterator of them works, so
online DPO can feed pairs it sampled itself. The model is a paired stage
(mcore/distill.py): its last stage returns (policy logits, reference logits), both
vocab-parallel [2b, s, V/tp]; earlier stages return the two residual streams.
Sequence log-probs are computed without gathering the vocabulary
(mcore/loss.py), then posttrain/dpo_loss.py turns them into the loss.
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.loss import vocab_parallel_sequence_logprobs
from megatron_kanana.posttrain.dpo_loss import dpo_loss


def make_dpo_forward_step(beta: float, label_smoothing: float = 0.0, sft_weight: float = 0.0):
    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        if tokens.shape[0] % 2:
            raise ValueError(f"a DPO micro-batch holds (chosen, rejected) row pairs; got {tokens.shape[0]} rows")
        output = model(tokens, batch["position_ids"].to(device, non_blocking=True), None)
        if not isinstance(output, tuple):  # not the last stage: both residual streams, concatenated
            return output, None
        policy_logits, reference_logits = output
        weight = batch.get("pair_weight")  # online DPO: 0 for pairs whose sampled extremes tie
        return policy_logits, partial(_loss, beta, label_smoothing, sft_weight, reference_logits,
                                      batch["labels"].to(device), batch["loss_mask"].to(device),
                                      None if weight is None else weight.to(device))

    return forward_step


def _loss(beta: float, label_smoothing: float, sft_weight: float, reference_logits: torch.Tensor,
          labels: torch.Tensor, loss_mask: torch.Tensor, pair_weight, policy_logits: torch.Tensor):
    policy = vocab_parallel_sequence_logprobs(policy_logits, labels, loss_mask)
    with torch.no_grad():
        reference = vocab_parallel_sequence_logprobs(reference_logits, labels, loss_mask)
    # stats carry LOSS_KEY and STAT_KEYS of dpo_loss.py, the trainer's loss and extra keys
    return dpo_loss(policy, reference, loss_mask.float().sum(dim=-1), beta,
                    label_smoothing=label_smoothing, sft_weight=sft_weight)

