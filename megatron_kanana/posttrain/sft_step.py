"""The SFT forward step handed to megatron's schedules: packed-sequence masking + masked LM loss.

A batch with `segment_ids` (packed samples) gets a block-diagonal causal attention mask
(packing.packed_attention_mask); without them attention is plain causal. The loss is the
trainer's vocab-parallel cross-entropy + z-loss over the SFT loss mask (assistant tokens).

Only the local/SDPA attention honours the mask (mcore/attention.py); Transformer Engine's
causal attention ignores `attention_mask`, so packed batches on TE are refused rather than
let attention cross conversations (TE needs THD PackedSeqParams: not done yet).
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

import torch

from megatron_kanana.mcore.attention import SDPACoreAttention
from megatron_kanana.posttrain.packing import packed_attention_mask
from megatron_kanana.training.lm_step import lm_loss_output


def _uses_sdpa(model: torch.nn.Module) -> bool:
    return any(isinstance(m, SDPACoreAttention) for m in model.modules())


def make_sft_forward_step(z_loss_coef: float):
    checked: dict[int, bool] = {}

    def forward_step(batch_iter: Iterator, model: torch.nn.Module):
        batch = next(batch_iter)
        device = next(model.parameters()).device
        tokens = batch["tokens"].to(device, non_blocking=True)
        position_ids = batch["position_ids"].to(device, non_blocking=True)
        mask = None
        if "segment_ids" in batch:
            if id(model) not in checked:
                checked[id(model)] = _uses_sdpa(model)
            if not checked[id(model)]:
                raise NotImplementedError("packed SFT samples need the SDPA attention (local spec); Transformer "
                                          "Engine ignores attention_mask under a causal mask type")
            mask = packed_attention_mask(batch["segment_ids"].to(device, non_blocking=True))
        logits = model(tokens, position_ids, mask)  # last stage: vocab-parallel logits [b, s, V/tp]
        labels, loss_mask = batch["labels"].to(device), batch["loss_mask"].to(device)
        return logits, partial(lm_loss_output, labels, loss_mask, z_loss_coef)

    return forward_step

