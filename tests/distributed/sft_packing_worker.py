"""Worker for test_sft_packing: a tiny megatron model (a world of one) checks that a packed
sequence's block-diagonal mask really isolates conversations. Writes JSON to --out.

    python tests/distributed/sft_packing_worker.py --out result.json
"""
from __future__ import annotations

import argparse
import json

import torch

from megatron_kanana.mcore import model as mcore_model, runtime
from megatron_kanana.models import get_preset
from megatron_kanana.parallel import ParallelConfig
from megatron_kanana.posttrain.packing import packed_attention_mask
from megatron_kanana.posttrain.sft_step import make_sft_forward_step


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    args = p.parse_args()
    shape, parallel = get_preset("tiny"), ParallelConfig()
    rt = runtime.initialize(parallel, shape, seed=1234)
    model = mcore_model.build_model(shape, mcore_model.transformer_config(shape, parallel, rt.device))[0].eval()
    g = torch.Generator().manual_seed(0)
    a, b = torch.randint(0, shape.vocab_size, (7,), generator=g), torch.randint(0, shape.vocab_size, (9,), generator=g)
    tokens = torch.cat([a, b, torch.zeros(4, dtype=torch.long)])[None]  # A, B, 4 padding
    segments = torch.tensor([[1] * 7 + [2] * 9 + [0] * 4])
    positions = torch.cat([torch.arange(7), torch.arange(9), torch.arange(4)])[None]
    with torch.no_grad():
        packed = model(tokens, positions, packed_attention_mask(segments))
        unmasked = model(tokens, positions, None)
        alone_a = model(a[None], torch.arange(7)[None], None)
        alone_b = model(b[None], torch.arange(9)[None], None)
        batch = {"tokens": tokens, "position_ids": positions, "segment_ids": segments,
                 "labels": torch.roll(tokens, -1, 1), "loss_mask": (segments > 0).float()}
        _, loss_fn = make_sft_forward_step(0.0)(iter([batch]), model)
        loss, _ = loss_fn(packed)
    result = {
        "a_diff": (packed[:, :7] - alone_a).abs().max().item(),
        "b_diff": (packed[:, 7:16] - alone_b).abs().max().item(),
        "b_diff_without_mask": (unmasked[:, 7:16] - alone_b).abs().max().item(),
        "b_scale": alone_b.abs().max().item(),
        "step_loss": loss.item(),
        "manual_loss": torch.nn.functional.cross_entropy(packed[0, :16].float(), batch["labels"][0, :16]).item(),
    }
    with open(args.out, "w") as f:
        json.dump(result, f)
    runtime.shutdown()


if __name__ == "__main__":
    main()
